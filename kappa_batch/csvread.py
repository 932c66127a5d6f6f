"""CSV input that survives a column whose values change type late in the file.

Each file is read by Arrow's streaming CSV reader with the column types it infers
from the first block (or the API's declared types). If a value further down does
not fit (a ``1.5`` or ``abc`` in an integer column), the file is read again from
the first row not yet delivered with every column as text, and each batch is cast
to the types found so far: a column without a declared type widens (integer ->
float) when that makes the values fit, and the rows whose values still do not
fit are marked in :data:`INPUT_ERROR_COLUMN`; the scorer fails them into the
errors file instead of aborting the run.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import Any

import pyarrow as pa

from kappa.errors import InputError

log = logging.getLogger(__name__)

INPUT_ERROR_COLUMN = "_kappa_input_error"
# Types a column without a declared type may widen to, in order.
_WIDER = {pa.int8(): pa.int64(), pa.int16(): pa.int64(), pa.int32(): pa.int64(), pa.int64(): pa.float64()}
Opener = Callable[[], Any]  # a fresh binary stream of the file each call


def _is_conversion_error(exc: Exception) -> bool:
    return "conversion error" in str(exc) or "CSV conversion" in str(exc)


def read_csv(
    open_file: Opener, name: str, declared: pa.Schema | None, use_threads: bool
) -> Iterator[pa.RecordBatch]:
    """The batches of one CSV file (see the module's docstring)."""
    import pyarrow.csv as pacsv

    declared_types = {f.name: f.type for f in declared} if declared is not None else {}
    read = pacsv.ReadOptions(use_threads=use_threads)
    delivered = 0
    try:  # the fast way: Arrow converts while it parses (opening reads the first block already)
        convert = pacsv.ConvertOptions(column_types=declared_types)
        reader = pacsv.open_csv(open_file(), read_options=read, convert_options=convert)
        schema = _checked(reader.schema, name)
        for batch in reader:
            yield batch
            delivered += batch.num_rows
        return
    except pa.ArrowInvalid as exc:
        if not _is_conversion_error(exc):
            raise
        log.warning("%s: %s; reading the rest of the file value by value", name, exc)
    if delivered == 0:  # failed in the first block: the types inferred from it, the declared ones first
        inferred = _checked(pacsv.open_csv(open_file(), read_options=read).schema, name)
        schema = pa.schema([pa.field(f.name, declared_types.get(f.name, f.type)) for f in inferred])
    text = pacsv.ConvertOptions(column_types={f.name: pa.string() for f in schema}, strings_can_be_null=True)
    rest = pacsv.open_csv(
        open_file(),
        read_options=pacsv.ReadOptions(use_threads=use_threads, skip_rows_after_names=delivered),
        convert_options=text,
    )
    types = {f.name: f.type for f in schema}
    for batch in rest:
        yield typed(batch, types, declared_types)


def _checked(schema: pa.Schema, name: str) -> pa.Schema:
    try:
        schema.names  # noqa: B018 - decodes every column name
    except UnicodeDecodeError as exc:
        raise InputError(
            f"cannot read input {name!r} as csv: its header row is not UTF-8 text ({exc.reason} at byte "
            f"{exc.start}); save the file as UTF-8 (e.g. `iconv -f latin1 -t utf-8`)"
        ) from None
    return schema


def typed(
    batch: pa.RecordBatch, types: dict[str, pa.DataType], declared: dict[str, pa.DataType]
) -> pa.RecordBatch:
    """``batch`` (text columns) cast to ``types``, widening undeclared columns where that fits;
    rows that still do not fit get a message in :data:`INPUT_ERROR_COLUMN` and nulls."""
    import pyarrow.compute as pc

    columns: list[pa.Array] = []
    messages: list[str | None] = [None] * batch.num_rows
    for field, column in zip(batch.schema, batch.columns, strict=True):
        target = types[field.name]
        if pa.types.is_string(target) or pa.types.is_large_string(target):
            columns.append(column.cast(target))
            continue
        cast = _try_cast(column, target)
        while cast is None and field.name not in declared and target in _WIDER:
            target = types[field.name] = _WIDER[target]
            cast = _try_cast(column, target)
        if cast is None:
            bad = _bad_positions(column, target, 0)
            for row in bad:
                if messages[row] is None:
                    messages[row] = f"column {field.name!r}: cannot read {column[row].as_py()!r} as {target}"
            keep = pa.array([True] * batch.num_rows)
            if bad:
                mask = [True] * batch.num_rows
                for row in bad:
                    mask[row] = False
                keep = pa.array(mask)
            cast = pc.if_else(keep, column, pa.scalar(None, pa.string())).cast(target)
        columns.append(cast)
    names = [*batch.schema.names, INPUT_ERROR_COLUMN]
    return pa.RecordBatch.from_arrays([*columns, pa.array(messages, pa.string())], names=names)


def _try_cast(column: pa.Array, target: pa.DataType) -> pa.Array | None:
    try:
        return column.cast(target)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return None


def _bad_positions(column: pa.Array, target: pa.DataType, offset: int) -> list[int]:
    """The rows of ``column`` whose value does not cast to ``target`` (by halving)."""
    if _try_cast(column, target) is not None:
        return []
    if len(column) == 1:
        return [offset]
    half = len(column) // 2
    return _bad_positions(column.slice(0, half), target, offset) + _bad_positions(
        column.slice(half), target, offset + half
    )
