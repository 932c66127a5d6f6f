"""FileInput's wire formats: the files of a multipart form, or the raw body as one file."""

from __future__ import annotations

import pytest

from kappa.adapters import FileInput
from kappa.errors import InputError


def test_form_files_and_raw_bodies():
    adapter = FileInput()
    assert adapter.from_http(b"", "multipart/form-data", [b"one", b"two"]).column(0).to_pylist() == [
        b"one",
        b"two",
    ]
    assert adapter.from_http(b"raw", "application/octet-stream").column(0).to_pylist() == [b"raw"]
    with pytest.raises(InputError, match="holds no file"):
        adapter.from_http(b"", "multipart/form-data", [])
    with pytest.raises(InputError, match="body is empty"):
        adapter.from_http(b"", "application/octet-stream")
    assert "multipart/form-data" in adapter.openapi_request() and "multipart/form-data" in adapter.media_types
