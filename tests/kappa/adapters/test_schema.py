"""Fitting Arrow data to a schema: strictly for inputs (a clear 400-worthy error), loosely for outputs."""

from __future__ import annotations

import pyarrow as pa
import pytest

from kappa.adapters.schema import fit
from kappa.errors import InferenceError, InputError


def test_a_row_wider_than_the_declared_columns_is_refused_not_cut():
    declared = pa.schema([(str(i), pa.float64()) for i in range(4)])
    wide = pa.RecordBatch.from_pydict({str(i): [1.0] for i in range(5)})
    with pytest.raises(InputError, match="expects rows of 4 values, got rows of 5"):
        fit(wide, declared, strict=True)
    assert fit(wide.select([0, 1, 2, 3]), declared, strict=True).num_columns == 4


def test_inputs_name_the_missing_column_and_the_value_that_does_not_fit():
    declared = pa.schema([("a", pa.int64()), ("b", pa.float64())])
    with pytest.raises(InputError, match=r"missing column\(s\) \['b'\]"):
        fit(pa.table({"a": [1]}), declared, strict=True)
    with pytest.raises(InputError, match="column 'a' holds double values; the API takes int64"):
        fit(pa.table({"a": [1.5], "b": [1.0]}), declared, strict=True)
    fitted = fit(pa.table({"b": [2], "a": [1]}), declared, strict=True)
    assert fitted.schema == declared and fitted.to_pylist() == [{"a": 1, "b": 2.0}]


def test_outputs_get_nulls_for_missing_columns_and_refuse_lossy_casts():
    declared = pa.schema([("prediction", pa.int64()), ("score", pa.float64())])
    fitted = fit(pa.table({"prediction": [1, 2]}), declared)
    assert fitted.to_pylist() == [{"prediction": 1, "score": None}, {"prediction": 2, "score": None}]
    with pytest.raises(InferenceError, match="output column 'prediction'"):
        fit(pa.table({"prediction": [1.5]}), declared)
