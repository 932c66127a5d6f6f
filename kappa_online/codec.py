"""HTTP bodies <-> Arrow batches, through the API's own input adapter (the batch path's decoding).

``DataframeInput`` takes the JSON that ``kappa run --input`` takes (rows, records, or
``{"columns": [...], "data": [...]}``) and CSV; ``JsonInput`` one JSON value per request;
``ImageInput`` / ``FileInput`` multipart files or a raw body. Every decoding problem is an
:class:`~kappa.errors.InputError` (HTTP 4xx), never a traceback.
"""

from __future__ import annotations

import io
import json
from typing import Any

import pyarrow as pa

from kappa.errors import InputError


class UnsupportedMediaType(InputError):
    """The content type does not fit the API's input (HTTP 415)."""


def media_type(content_type: str | None) -> str:
    return (content_type or "").split(";", 1)[0].strip().lower()


def decode(
    adapter: Any, content_type: str | None, body: bytes, files: list[bytes] | None = None
) -> pa.RecordBatch:
    """The request as the Arrow batch the adapter would hand to the runner."""
    from kappa.adapters import DataframeInput, FileInput, JsonInput

    kind = media_type(content_type)
    if isinstance(adapter, FileInput):
        if files is not None:
            if not files:
                raise InputError("the multipart body holds no file; send the file as a form field")
            return adapter.to_arrow(files)
        if not body:
            raise InputError("the request body is empty; send the file's bytes or a multipart form")
        return adapter.to_arrow([body])
    if isinstance(adapter, DataframeInput) and kind in ("text/csv", "application/csv"):
        return _csv(body)
    if kind not in ("application/json", "", "text/plain") and not kind.endswith("+json"):
        raise UnsupportedMediaType(
            f"content type {kind!r} is not accepted here; send application/json"
            + (" or text/csv" if isinstance(adapter, DataframeInput) else "")
        )
    payload = _json(body)
    if isinstance(adapter, JsonInput):
        return _adapt(adapter, [payload])  # one request is one JSON value
    if isinstance(payload, list) and not payload:
        raise InputError("the request holds no rows; send a list of rows or records")
    batch = _rows(adapter, payload)
    if batch is None:
        batch = _adapt(adapter, payload)
    if batch.num_rows == 0:
        raise InputError("the request holds no rows")
    return batch


SCALARS = (int, float, str, bool, type(None))


def _rows(adapter: Any, payload: Any) -> pa.RecordBatch | None:
    """Rows (``[[...], ...]``) or records (``[{...}, ...]``) of scalars straight to Arrow.

    Gives what the adapter's own pandas route gives (names, types, nulls) without building
    a DataFrame per request; anything less regular goes that route (``None``).
    """
    if not isinstance(payload, list) or not payload:
        return None
    first = payload[0]
    if isinstance(first, list):
        width = len(first)
        if any(not isinstance(row, list) or len(row) != width for row in payload):
            return None
        declared = getattr(adapter, "columns", None)
        if declared is not None and len(declared) != width:
            raise InputError(
                f"{adapter.describe()} expects {len(declared)} columns {list(declared)}, "
                f"got rows of {width} values"
            )
        names = list(declared) if declared is not None else [str(i) for i in range(width)]
        numeric = _numeric_rows(payload, width)
        if numeric is not None:
            return pa.RecordBatch.from_arrays(numeric, names=[str(n) for n in names]) if names else None
        columns: list[Any] = list(zip(*payload, strict=True))
    elif isinstance(first, dict):
        names = list(first)
        if any(not isinstance(row, dict) or list(row) != names for row in payload):
            return None
        columns = [[row[name] for row in payload] for name in names]
    else:
        return None
    if not names or len(set(names)) != len(names):
        return None
    arrays = []
    for column in columns:
        if any(not isinstance(value, SCALARS) for value in column):
            return None
        try:
            array = pa.array(column)
        except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):
            return None  # mixed kinds: the adapter decides
        if pa.types.is_null(array.type):
            return None
        arrays.append(array)
    return pa.RecordBatch.from_arrays(arrays, names=[str(n) for n in names])


def _numeric_rows(payload: list[Any], width: int) -> list[pa.Array] | None:
    """Rows of plain numbers as columns, through one NumPy array (the common online request)."""
    import numpy as np

    try:
        matrix = np.array(payload)
    except (ValueError, TypeError):
        return None
    if matrix.ndim != 2 or matrix.shape[1] != width or matrix.dtype.kind not in "fi":
        return None
    if any(type(v) is bool for row in payload for v in row):
        return None  # NumPy would read True as 1; pandas keeps booleans
    rows = matrix.shape[0]
    flat = pa.array(np.ascontiguousarray(matrix.T).ravel())  # one conversion, then zero-copy slices
    return [flat.slice(i * rows, rows) for i in range(width)]


def _adapt(adapter: Any, payload: Any) -> pa.RecordBatch:
    """The adapter's own decoding; whatever it cannot read is the request's fault (400)."""
    try:
        batch: pa.RecordBatch = adapter.to_arrow(payload)
    except InputError:
        raise
    except (ValueError, TypeError, KeyError, IndexError, OverflowError, pa.ArrowException) as exc:
        raise InputError(f"{adapter.describe()} cannot read this payload: {exc}") from None
    except RecursionError:
        raise InputError(f"{adapter.describe()} cannot read this payload: it is nested too deeply") from None
    return batch


def _json(body: bytes) -> Any:
    if not body.strip():
        raise InputError("the request body is empty; send JSON")
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InputError(f"the request body is not valid JSON: {exc}") from None
    except RecursionError:
        raise InputError("the request body's JSON is nested too deeply; send rows of plain values") from None


def _csv(body: bytes) -> pa.RecordBatch:
    import pyarrow.csv as pacsv

    try:
        table = pacsv.read_csv(io.BytesIO(body))
    except (pa.ArrowInvalid, ValueError) as exc:
        raise InputError(f"the request body is not valid CSV with a header row: {exc}") from None
    if table.num_rows == 0:
        raise InputError("the CSV holds no rows")
    return table.combine_chunks().to_batches()[0]


def conform(batch: pa.RecordBatch, expected: pa.Schema | None) -> pa.RecordBatch:
    """``batch`` with the columns (order and types) the API takes; 400-worthy errors otherwise."""
    if expected is None or batch.schema.equals(expected):
        return batch
    names = batch.schema.names
    if (
        names != expected.names
        and all(n.isdigit() for n in names)
        and all(n.isdigit() for n in expected.names)
    ):
        raise InputError(f"this API expects rows of {len(expected.names)} values, got rows of {len(names)}")
    missing = [n for n in expected.names if n not in names]
    extra = [n for n in names if n not in expected.names]
    if missing:
        raise InputError(
            f"missing column(s) {missing}; the API takes {expected.names}"
            + (f" (got {extra})" if extra else "")
        )
    columns = []
    for field in expected:
        column = batch.column(names.index(field.name))
        if column.type != field.type:
            try:
                column = column.cast(field.type, safe=True)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                raise InputError(
                    f"column {field.name!r} holds {column.type} values; the API takes {field.type}"
                ) from None
        columns.append(column)
    return pa.RecordBatch.from_arrays(columns, schema=expected)


def encode(outputs: pa.Table, output_adapter: Any) -> list[Any]:
    """One JSON value per row: the value for one output column, a record for several."""
    rows: list[Any] = output_adapter.to_json_rows(outputs)
    return rows
