"""DataframeInput's wire formats: JSON rows, records and columns, CSV; one decoder for CLI and HTTP."""

from __future__ import annotations

import pyarrow as pa
import pytest

from kappa.adapters import DataframeInput
from kappa.errors import InputError, UnsupportedMediaType
from kappa_batch.io import inline_source


def test_rows_records_and_columns_decode_to_the_same_batch():
    adapter = DataframeInput(columns=["a", "b"])
    rows = adapter.from_json([[1.5, 2], [3.0, 4]])
    records = adapter.from_json([{"a": 1.5, "b": 2}, {"a": 3.0, "b": 4}])
    columns = adapter.from_json({"columns": ["a", "b"], "data": [[1.5, 2], [3.0, 4]]})
    assert rows.to_pylist() == records.to_pylist() == columns.to_pylist()
    assert rows.schema.names == ["a", "b"]


def test_kappa_run_input_and_an_http_body_decode_the_same_way():
    adapter = DataframeInput(columns=["a", "b"], dtype="float64")
    text = "[[1, 2], [3, 4.5]]"
    from_cli = next(iter(inline_source(text, adapter).batches))
    from_http = adapter.from_http(text.encode(), "application/json")
    assert from_http.schema == pa.schema([("a", pa.float64()), ("b", pa.float64())])
    assert from_cli.to_pylist() == from_http.to_pylist()


def test_csv_and_media_types():
    adapter = DataframeInput()
    batch = adapter.from_http(b"a,b\n1,x\n2,y\n", "text/csv")
    assert batch.to_pylist() == [{"a": 1, "b": "x"}, {"a": 2, "b": "y"}]
    with pytest.raises(UnsupportedMediaType, match="application/json or text/csv"):
        adapter.from_http(b"a=1", "application/x-www-form-urlencoded")
    with pytest.raises(InputError, match="not valid JSON"):
        adapter.from_http(b"[1,", "application/json")
    assert set(adapter.openapi_request()) == {"application/json", "text/csv"}


def test_bad_payloads_are_input_errors_naming_the_problem():
    adapter = DataframeInput(columns=["a", "b"], dtype="float64")
    with pytest.raises(InputError, match="expects 2 columns"):
        adapter.from_json([[1, 2, 3]])
    with pytest.raises(InputError, match="holds no rows"):
        adapter.from_json([])
    with pytest.raises(InputError, match="missing column"):
        adapter.from_http(b'[{"a": 1}]', "application/json")
