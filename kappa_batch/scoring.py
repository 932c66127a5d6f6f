"""Score one shard: keep the row ids beside the outputs, split good rows from failed ones."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from kappa.errors import InputError
from kappa_batch.csvread import INPUT_ERROR_COLUMN
from kappa_batch.runner import BatchRunner, RunResult

POSITION_COLUMN = "_row"
INPUT_ERROR_STATUS = 400  # a value the input file holds could not be read as its column's type


@dataclass(frozen=True)
class ScoredShard:
    outputs: pa.Table  # id column + outputs, only rows that got a prediction
    errors: pa.Table  # id column + status + message
    rows_in: int

    @property
    def rows_out(self) -> int:
        return int(self.outputs.num_rows)

    @property
    def rows_error(self) -> int:
        return int(self.errors.num_rows)


def split_ids(
    batch: pa.RecordBatch, offset: int, id_column: str | None
) -> tuple[str, pa.Array, pa.RecordBatch]:
    """The id column (named, or the rows' positions) and the batch the API sees."""
    if id_column is None:
        ids = pa.array(np.arange(offset, offset + batch.num_rows, dtype=np.int64))
        return POSITION_COLUMN, ids, batch
    if id_column not in batch.schema.names:
        raise InputError(
            f"--id-column {id_column!r} is not in the input; its columns are {batch.schema.names}"
        )
    index = batch.schema.get_field_index(id_column)
    return id_column, batch.column(index), batch.remove_column(index)


def combine(parts: list[ScoredShard]) -> ScoredShard:
    """One shard from the scored batches it was read in."""
    if len(parts) == 1:
        return parts[0]
    return ScoredShard(
        outputs=pa.concat_tables([p.outputs for p in parts], promote_options="permissive"),
        errors=pa.concat_tables([p.errors for p in parts], promote_options="permissive"),
        rows_in=sum(p.rows_in for p in parts),
    )


def _unreadable_rows(batch: pa.RecordBatch) -> tuple[pa.RecordBatch, pa.Array | None]:
    """The batch without the reader's :data:`INPUT_ERROR_COLUMN`, and that column (None if absent
    or empty): rows whose values could not be read as their column's type."""
    if INPUT_ERROR_COLUMN not in batch.schema.names:
        return batch, None
    index = batch.schema.get_field_index(INPUT_ERROR_COLUMN)
    messages = batch.column(index)
    batch = batch.remove_column(index)
    return batch, messages if messages.null_count < len(messages) else None


def score_shard(
    runner: BatchRunner, batch: pa.RecordBatch, offset: int, id_column: str | None
) -> ScoredShard:
    import pyarrow.compute as pc

    rows_in = batch.num_rows
    batch, unreadable = _unreadable_rows(batch)
    name, ids, inputs = split_ids(batch, offset, id_column)
    failed_ids, failed_messages = ids.slice(0, 0), pa.array([], pa.string())
    if unreadable is not None:  # those rows go to the errors file unscored
        readable = pc.is_null(unreadable)
        failed_ids, failed_messages = ids.filter(pc.invert(readable)), unreadable.drop_null()
        ids, inputs = ids.filter(readable), inputs.filter(readable)
    result = runner.run(inputs)
    if name in result.outputs.column_names:
        raise InputError(
            f"the API output has a column named {name!r}, like the id column; pass another --id-column"
        )
    outputs = result.outputs.add_column(0, name, ids)
    if result.errors.num_rows:
        outputs = outputs.filter(result.ok_mask)
        error_ids = ids.take(result.errors["row"])
    else:
        error_ids = ids.slice(0, 0)
    errors = pa.table(
        {name: error_ids, "status": result.errors["status"], "message": result.errors["message"]}
    )
    if len(failed_ids):
        unread = pa.table(
            {
                name: failed_ids,
                "status": pa.array([INPUT_ERROR_STATUS] * len(failed_ids), pa.int32()),
                "message": failed_messages,
            }
        )
        errors = pa.concat_tables([unread, errors.cast(unread.schema)])
    return ScoredShard(outputs=outputs, errors=errors, rows_in=rows_in)


def error_columns(errors: pa.Table, size: int) -> tuple[pa.Array, pa.Array]:
    """``status`` and ``message`` aligned to a batch's rows (null where the row succeeded)."""
    if errors.num_rows == 0:
        return pa.nulls(size, pa.int32()), pa.nulls(size, pa.string())
    import pyarrow.compute as pc

    positions: list[int | None] = [None] * size
    for index, row in enumerate(errors["row"].to_pylist()):
        positions[row] = index
    take = pa.array(positions, pa.int64())
    return pc.take(errors["status"], take).combine_chunks(), pc.take(errors["message"], take).combine_chunks()


def aligned_columns(result: RunResult, outputs: pa.Schema, with_errors: bool) -> list[pa.Array]:
    """The outputs cast to ``outputs`` (null where missing), then ``status`` and ``message`` if asked."""
    size = result.outputs.num_rows
    columns = []
    for field in outputs:
        if field.name in result.outputs.column_names:
            columns.append(result.outputs.column(field.name).combine_chunks().cast(field.type))
        else:  # e.g. every row of the batch failed, so the outputs are all-null placeholders
            columns.append(pa.nulls(size, field.type))
    if with_errors:
        columns += error_columns(result.errors, size)
    return columns


def raise_first_error(errors: pa.Table, tag: str, api: str) -> None:
    """Fail with the first failed row (for ``errors="raise"``)."""
    from kappa.errors import KappaError

    first = errors.slice(0, 1).to_pylist()[0]
    raise KappaError(
        f"{errors.num_rows} row(s) failed in {tag} API {api}; first: status {first['status']}: "
        f"{first['message']} (use errors='column' to keep failures as data)"
    )
