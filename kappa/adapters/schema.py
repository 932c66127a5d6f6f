"""Fitting Arrow data to a shape: one schema (for inputs and outputs alike), one record batch."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, TypeVar

from kappa.errors import InferenceError, InputError

if TYPE_CHECKING:
    import pyarrow as pa

Arrow = TypeVar("Arrow", bound=Any)  # a pa.Table or a pa.RecordBatch: what comes in goes out


def fit(data: Arrow, schema: pa.Schema, strict: bool = False) -> Arrow:
    """``data`` with exactly ``schema``'s columns, in its order and types (a batch stays a batch).

    Outputs (``strict=False``): a missing column is all null (e.g. every row of the batch
    failed). Inputs (``strict=True``): a missing column is an :class:`~kappa.errors.InputError`.
    A value that does not fit its type (``1.5`` for an integer) is an error that names the column.
    """
    import pyarrow as pa

    names = data.schema.names
    if strict:
        _check_columns(names, schema)
    columns = []
    for field in schema:
        if field.name not in names:
            columns.append(pa.nulls(data.num_rows, field.type))
            continue
        column = data.column(names.index(field.name))
        if column.type != field.type:
            try:
                column = column.cast(field.type)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                if strict:
                    raise InputError(
                        f"column {field.name!r} holds {column.type} values; the API takes {field.type}"
                    ) from None
                raise InferenceError(
                    f"output column {field.name!r} holds {column.type} values that do not fit "
                    f"the declared {field.type}"
                ) from None
        columns.append(column)
    kind = pa.RecordBatch if isinstance(data, pa.RecordBatch) else pa.Table
    fitted: Arrow = kind.from_arrays(columns, schema=schema)
    return fitted


def _check_columns(names: list[str], schema: pa.Schema) -> None:
    if names != schema.names and all(n.isdigit() for n in names) and all(n.isdigit() for n in schema.names):
        raise InputError(f"this API expects rows of {len(schema.names)} values, got rows of {len(names)}")
    missing = [n for n in schema.names if n not in names]
    if missing:
        extra = [n for n in names if n not in schema.names]
        raise InputError(
            f"missing column(s) {missing}; the API takes {schema.names}"
            + (f" (got {extra})" if extra else "")
        )


def one_batch(data: pa.Table | pa.RecordBatch) -> pa.RecordBatch:
    """``data`` as one record batch (no copy when the table has one chunk; an empty one keeps its schema)."""
    import pyarrow as pa

    if isinstance(data, pa.RecordBatch):
        return data
    batches = data.to_batches()
    if len(batches) == 1:
        return batches[0]
    if data.num_rows == 0:
        return pa.RecordBatch.from_arrays([pa.array([], f.type) for f in data.schema], schema=data.schema)
    return data.combine_chunks().to_batches()[0]
