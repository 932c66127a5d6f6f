"""The Open Inference Protocol's tensors to one Arrow batch (in process; the routes run in test_server)."""

from __future__ import annotations

import pyarrow as pa
import pytest

from kappa.errors import InputError
from kappa_online.v2 import datatype, to_batch


def test_column_tensors_and_one_matrix_become_the_same_columns():
    columns = {
        "inputs": [
            {"name": "a", "shape": [2], "datatype": "FP64", "data": [1.0, 2.0]},
            {"name": "b", "shape": [2], "datatype": "INT32", "data": [3, 4]},
        ]
    }
    batch = to_batch(columns, None)
    assert batch.schema == pa.schema([("a", pa.float64()), ("b", pa.int32())])
    matrix = {"inputs": [{"name": "x", "shape": [2, 2], "datatype": "FP64", "data": [1, 3, 2, 4]}]}
    assert to_batch(matrix, ["a", "b"]).to_pydict() == {"a": [1.0, 2.0], "b": [3.0, 4.0]}
    assert datatype(pa.float32()) == "FP32" and datatype(pa.list_(pa.int8())) == "BYTES"


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ({"inputs": []}, "a V2 infer request is"),
        ({"inputs": [{"name": "a"}]}, "needs name, shape, datatype and data"),
        ({"inputs": [{"name": "a", "shape": [1], "datatype": "FP99", "data": [1]}]}, "unknown V2 datatype"),
        ({"inputs": [{"name": "a", "shape": [3], "datatype": "FP64", "data": [1, 2]}]}, "does not fit shape"),
    ],
)
def test_malformed_requests_are_input_errors(payload, message):
    with pytest.raises(InputError, match=message):
        to_batch(payload, None)
