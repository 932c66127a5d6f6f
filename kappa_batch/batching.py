"""Re-cut a stream of Arrow batches into batches of exactly ``size`` rows (the last may be short).

Shards are defined by these batches, so a re-run cuts the same input the same way
whatever chunks the reader happened to produce.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import pyarrow as pa


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
        table = pa.concat_tables([pa.Table.from_batches([p]) for p in parts], promote_options="permissive")
    else:
        table = pa.Table.from_batches(parts)
    return table.combine_chunks().to_batches(max_chunksize=None)[0]
