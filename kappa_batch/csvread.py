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
Opener = Callable[[], Any]  # a fresh binary stream of the file each call


def _is_conversion_error(exc: Exception) -> bool:
    return "conversion error" in str(exc) or "CSV conversion" in str(exc)


def read_csv(
    open_file: Opener,
    name: str,
    declared: pa.Schema | None,
    use_threads: bool,
    keep: frozenset[str] = frozenset(),
) -> Iterator[pa.RecordBatch]:
    """The batches of one CSV file (see the module's docstring); ``keep`` names columns that
    never widen (the id column) besides the declared ones."""
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
    fixed = frozenset(declared_types) | keep
    for batch in rest:
        yield typed(batch, types, fixed)


def _checked(schema: pa.Schema, name: str) -> pa.Schema:
    try:
        schema.names  # noqa: B018 - decodes every column name
    except UnicodeDecodeError as exc:
        raise InputError(
            f"cannot read input {name!r} as csv: its header row is not UTF-8 text ({exc.reason} at byte "
            f"{exc.start}); save the file as UTF-8 (e.g. `iconv -f latin1 -t utf-8`)"
        ) from None
    return schema


def typed(batch: pa.RecordBatch, types: dict[str, pa.DataType], fixed: frozenset[str]) -> pa.RecordBatch:
    """``batch`` (text columns) cast to ``types``; a column not in ``fixed`` (declared, or the id
    column) widens when that lets more of its values fit, for this batch and the rest of the file.
    Rows whose values still do not fit get a message in :data:`INPUT_ERROR_COLUMN` and nulls."""
    import numpy as np
    import pyarrow.compute as pc

    columns: list[pa.Array] = []
    messages: list[str | None] = [None] * batch.num_rows
    for field, column in zip(batch.schema, batch.columns, strict=True):
        target = types[field.name]
        untyped = pa.types.is_null(target)  # empty where Arrow inferred types: no type to keep yet
        if untyped:
            target = pa.int64()
        elif not _castable(target):  # text, or a type Arrow cannot read from text: keep the text
            types[field.name] = pa.string()
            columns.append(column)
            continue
        bad = _bad_mask(column, target)
        if untyped and bad is None:
            types[field.name] = target
        if bad is not None and (untyped or field.name not in fixed):
            for wider in _widenings(target, untyped):
                wider_bad = _bad_mask(column, wider) if _castable(wider) else None  # text always fits
                if wider_bad is None or wider_bad.sum() < bad.sum():
                    target, bad = wider, wider_bad
                    types[field.name] = wider
                if bad is None:
                    break
        if bad is None:
            columns.append(column.cast(target))
            continue
        for row in np.flatnonzero(bad):
            if messages[row] is None:
                messages[row] = f"column {field.name!r}: cannot read {column[int(row)].as_py()!r} as {target}"
        columns.append(pc.if_else(pa.array(~bad), column, pa.scalar(None, pa.string())).cast(target))
    names = [*batch.schema.names, INPUT_ERROR_COLUMN]
    return pa.RecordBatch.from_arrays([*columns, pa.array(messages, pa.string())], names=names)


def _widenings(target: pa.DataType, untyped: bool) -> list[pa.DataType]:
    """What an undeclared column may become instead, in order: an integer column may take
    decimals; a column that was empty where Arrow inferred types takes what its values fit."""
    if untyped:
        return [pa.float64(), pa.string()]
    if pa.types.is_integer(target):
        return [pa.int64(), pa.float64()] if target != pa.int64() else [pa.float64()]
    return []


def _castable(target: pa.DataType) -> bool:
    if pa.types.is_string(target) or pa.types.is_large_string(target):
        return False
    return _try_cast(pa.array([], pa.string()), target) is not None


def _try_cast(column: pa.Array, target: pa.DataType) -> pa.Array | None:
    try:
        return column.cast(target)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
        return None


_PATTERNS = {  # text that surely reads as these types; anything else is checked value by value
    "int": r"^[+-]?[0-9]+$",
    "float": r"^[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?$|^[+-]?(inf|infinity|nan)$",
}


def _bad_mask(column: pa.Array, target: pa.DataType) -> Any:
    """A NumPy mask of the rows whose value does not read as ``target``, or None when all do.

    Vectorised: a pattern clears the values that surely fit, and only the distinct other
    values are tried one by one (a column of many bad values stays fast)."""
    import numpy as np
    import pyarrow.compute as pc

    if _try_cast(column, target) is not None:
        return None
    present = column.is_valid().to_numpy(zero_copy_only=False)
    kind = "int" if pa.types.is_integer(target) else "float" if pa.types.is_floating(target) else None
    sure = np.zeros(len(column), dtype=bool)
    if kind is not None:
        matched = pc.match_substring_regex(column, _PATTERNS[kind], ignore_case=True)
        sure = matched.fill_null(False).to_numpy(zero_copy_only=False)
        if _try_cast(column.filter(pa.array(sure)), target) is None:  # e.g. an integer too large
            sure[:] = False
    suspects = present & ~sure
    values = pc.unique(column.filter(pa.array(suspects)))
    failing = [v for v in values.to_pylist() if _try_cast(pa.array([v], pa.string()), target) is None]
    if not failing:
        return None
    bad = pc.is_in(column, value_set=pa.array(failing, pa.string())).fill_null(False)
    return bad.to_numpy(zero_copy_only=False)
