"""JsonInput's wire format: one JSON value per HTTP request, a list of values for `kappa run --input`."""

from __future__ import annotations

import pytest

from kappa.adapters import JsonInput
from kappa.errors import InputError, UnsupportedMediaType


def test_one_request_is_one_row_and_a_cli_list_is_many():
    adapter = JsonInput()
    assert adapter.from_http(b'{"q": [1, 2]}', "application/json").column(0).to_pylist() == ['{"q":[1,2]}']
    assert adapter.from_json([{"q": 1}, {"q": 2}]).num_rows == 2
    with pytest.raises(InputError, match="takes a list of JSON values"):
        adapter.from_json({"q": 1})
    with pytest.raises(UnsupportedMediaType):
        adapter.from_http(b"q,1", "text/csv")
    with pytest.raises(InputError, match="nested too deeply"):
        adapter.from_http(b"[" * 100_000 + b"]" * 100_000, "application/json")
