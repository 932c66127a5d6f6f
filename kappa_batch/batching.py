"""Re-cut a stream of Arrow batches into batches of exactly ``size`` rows (the last may be short).

Shards are defined by these batches, so a re-run cuts the same input the same way
whatever chunks the reader happened to produce.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import pyarrow as pa

from kappa.adapters.schema import one_batch


def rebatch(batches: Iterable[pa.RecordBatch], size: int) -> Iterator[pa.RecordBatch]:
    if size < 1:
        raise ValueError("batch size must be positive")
    pending: list[pa.RecordBatch] = []
    pending_rows = 0
    for batch in batches:
        offset = 0
        while offset < batch.num_rows:
            take = min(size - pending_rows, batch.num_rows - offset)
            pending.append(batch.slice(offset, take))
            pending_rows += take
            offset += take
            if pending_rows == size:
                yield _combine(pending)
                pending, pending_rows = [], 0
    if pending_rows:
        yield _combine(pending)


def _combine(parts: list[pa.RecordBatch]) -> pa.RecordBatch:
    if len(parts) == 1:
        return parts[0]
    if any(p.schema != parts[0].schema for p in parts):  # a reader widened a type mid-stream
        table = _promote([pa.Table.from_batches([p]) for p in parts])
    else:
        table = pa.Table.from_batches(parts)
    return one_batch(table.combine_chunks())


def _promote(tables: list[pa.Table]) -> pa.Table:
    """One table; a column whose types cannot be promoted without loss (int64 beyond 2**53
    next to float64) becomes text, and the API's adapter decides what it reads from it."""
    try:
        return pa.concat_tables(tables, promote_options="permissive")
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        types: dict[str, set[pa.DataType]] = {}
        for table in tables:
            for field in table.schema:
                types.setdefault(field.name, set()).add(field.type)
        mixed = {name for name, seen in types.items() if len(seen) > 1}
        as_text = [
            pa.table(
                [
                    c.cast(pa.string()) if n in mixed else c
                    for n, c in zip(t.column_names, t.columns, strict=True)
                ],
                names=t.column_names,
            )
            for t in tables
        ]
        return pa.concat_tables(as_text, promote_options="permissive")
