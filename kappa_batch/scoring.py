"""Score one Arrow batch with a bundle's API: the one scorer under every engine.

``kappa run`` shards, Spark ``score()`` and its column UDF, Dask partitions and the online
dispatcher all call :func:`score_batch` and read the result through :class:`ScoredBatch`:

* every input row has an **id**: the ``--id-column`` (taken out of what the model sees),
  ids the engine computed (:data:`ROW_ID`, the row's position in the whole input), or the
  row's position in this batch plus ``offset``;
* rows the reader could not read (a CSV value that does not fit its column) never reach
  the model and fail as ``unreadable`` with status 400;
* failures have **one shape**: ``id, _status, _message`` (:data:`ERROR_FIELDS`), and a typed
  kind (:data:`kappa.inference.ErrorKind`) that callers switch on, never the message;
* outputs can be **aligned** to a declared schema (cast, null where missing).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa

from kappa.adapters.schema import fit, one_batch
from kappa.errors import InputError, KappaError
from kappa.inference import null_outputs
from kappa_batch.csvread import INPUT_ERROR_COLUMN
from kappa_batch.runner import ERROR_SCHEMA, NO_ERRORS, BatchRunner, RunResult, error_table

if TYPE_CHECKING:
    from kappa.inference import ErrorKind

ROW_ID = "_row"  # the id of a row when no --id-column names one: its position in the input
STATUS, MESSAGE = "_status", "_message"
ERROR_FIELDS = (pa.field(STATUS, pa.int32()), pa.field(MESSAGE, pa.string()))
UNREADABLE_STATUS = 400  # a value the input file holds could not be read as its column's type
ERROR_MODES = ("raise", "column")


def check_errors(value: str) -> None:
    if value not in ERROR_MODES:
        raise InputError(f"errors must be 'raise' or 'column', not {value!r}")


def check_id_column(id_column: str | None, columns: Sequence[str]) -> None:
    if id_column is not None and id_column not in columns:
        raise InputError(
            f"the id column (--id-column / id_column) {id_column!r} is not in the input; "
            f"its columns are {list(columns)}"
        )


@dataclass(frozen=True)
class ScoredBatch:
    """One scored batch: every input row's id, and the runner's result aligned to those rows."""

    id_name: str
    result: RunResult  # outputs aligned to the input rows; errors by row position
    offset: int = 0  # with no ids: row i's id is offset + i
    given_ids: pa.Array | None = None

    @property
    def rows_in(self) -> int:
        return int(self.result.outputs.num_rows)

    @property
    def rows_error(self) -> int:
        return int(self.result.errors.num_rows)

    @property
    def rows_out(self) -> int:
        return self.rows_in - self.rows_error

    @functools.cached_property
    def ids(self) -> pa.Array:  # read by outputs() and errors() of one shard: made once
        if self.given_ids is not None:
            return self.given_ids
        return pa.array(np.arange(self.offset, self.offset + self.rows_in, dtype=np.int64))

    def kinds(self) -> list[ErrorKind]:
        kinds: list[ErrorKind] = self.result.errors["kind"].to_pylist()
        return kinds

    # -- views ---------------------------------------------------------------------------------
    def outputs(self) -> pa.Table:
        """The id column and the outputs of the rows that got a prediction (an output shard)."""
        if self.id_name in self.result.outputs.column_names:
            raise InputError(
                f"the API output has a column named {self.id_name!r}, like the id column; "
                "pass another --id-column"
            )
        table = self.result.outputs.add_column(0, self.id_name, self.ids)
        return table.filter(self.result.ok_mask) if self.rows_error else table

    def errors(self) -> pa.Table:
        """The failed rows: ``id, _status, _message``."""
        errors = self.result.errors
        return pa.table(
            [self.ids.take(errors["row"]), errors["status"], errors["message"]],
            schema=pa.schema([pa.field(self.id_name, self.ids.type), *ERROR_FIELDS]),
        )

    def error_columns(self) -> tuple[pa.Array, pa.Array]:
        """``_status`` and ``_message`` aligned to the rows (null where the row got a prediction)."""
        size, errors = self.rows_in, self.result.errors
        if errors.num_rows == 0:
            return pa.nulls(size, pa.int32()), pa.nulls(size, pa.string())
        positions = np.full(size, -1, dtype=np.int64)
        positions[errors["row"].to_numpy()] = np.arange(errors.num_rows)
        take = pa.array(positions, mask=positions < 0)
        return (
            errors["status"].take(take).combine_chunks(),
            errors["message"].take(take).combine_chunks(),
        )

    def columns(self, outputs: pa.Schema, with_id: bool, with_errors: bool) -> list[pa.Array]:
        """Every row in order: the id (if asked), the outputs cast to ``outputs`` (null where
        missing), then ``_status`` and ``_message`` (if asked): a Spark or Dask frame's columns."""
        columns = [self.ids] if with_id else []
        columns += fit(self.result.outputs, outputs).columns
        if with_errors:
            columns += self.error_columns()
        return [c.combine_chunks() if isinstance(c, pa.ChunkedArray) else c for c in columns]

    def raise_first_error(self, tag: str, api: str) -> None:
        """Fail with the first failed row (``errors="raise"``)."""
        if not self.rows_error:
            return
        first = self.result.errors.slice(0, 1).to_pylist()[0]
        raise KappaError(
            f"{self.rows_error} row(s) failed in {tag} API {api}; first: status {first['status']}: "
            f"{first['message']} (use errors='column' to keep failures as data)"
        )

    def split(self, lengths: Sequence[int]) -> list[ScoredBatch]:
        """Consecutive parts of ``lengths`` rows (the requests of an online batch), each numbered
        from 0; one ordered pass over the failed rows and the responses."""
        import bisect

        import pyarrow.compute as pc

        if len(lengths) == 1:
            return [self]
        result = self.result
        bounds = np.cumsum([0, *lengths])
        rows = result.errors["row"].to_numpy()
        cuts = np.searchsorted(rows, bounds)
        asked = sorted(result.responses)
        parts = []
        for i, length in enumerate(lengths):
            start = int(bounds[i])
            errors = result.errors.slice(int(cuts[i]), int(cuts[i + 1] - cuts[i]))
            if errors.num_rows:
                errors = errors.set_column(0, "row", pc.subtract(errors["row"], start))
            responses = {}
            if asked:
                low, high = bisect.bisect_left(asked, start), bisect.bisect_left(asked, start + length)
                responses = {row - start: result.responses[row] for row in asked[low:high]}
            ids = self.given_ids.slice(start, length) if self.given_ids is not None else None
            part = RunResult(result.outputs.slice(start, length), errors, responses)
            parts.append(ScoredBatch(self.id_name, part, self.offset + start, ids))
        return parts


def split_ids(batch: pa.RecordBatch, id_column: str | None) -> tuple[pa.Array | None, pa.RecordBatch]:
    """The named id column (``None`` without one) and the batch the API sees."""
    if id_column is None:
        return None, batch
    check_id_column(id_column, batch.schema.names)
    index = batch.schema.get_field_index(id_column)
    return batch.column(index), batch.remove_column(index)


def score_batch(
    runner: BatchRunner,
    batch: pa.RecordBatch | pa.Table,
    *,
    offset: int = 0,
    id_column: str | None = None,
    ids: pa.Array | None = None,
    headers: Sequence[Mapping[str, str]] | None = None,
    reader_errors: bool = False,
) -> ScoredBatch:
    """Score ``batch``: ids from ``id_column`` (taken out of the input), else ``ids``, else the
    rows' positions plus ``offset``; ``headers``: each row's request headers (online);
    ``reader_errors``: the batch comes from ``kappa run``'s reader, whose
    :data:`~kappa_batch.csvread.INPUT_ERROR_COLUMN` marks rows it could not read."""
    if isinstance(batch, pa.Table):
        batch = one_batch(batch)
    named, batch = split_ids(batch, id_column)
    if named is not None:
        ids = named
    unreadable = None
    if reader_errors:
        batch, unreadable = _unreadable_rows(batch)
    if unreadable is None:
        result = runner.run(batch, headers)
    else:
        result = _run_readable(runner, batch, unreadable, headers)
    return ScoredBatch(id_column or ROW_ID, result, offset, ids)


def _unreadable_rows(batch: pa.RecordBatch) -> tuple[pa.RecordBatch, pa.Array | None]:
    """The batch without the reader's :data:`INPUT_ERROR_COLUMN`, and that column (None if absent
    or empty): rows whose values could not be read as their column's type."""
    if INPUT_ERROR_COLUMN not in batch.schema.names:
        return batch, None
    index = batch.schema.get_field_index(INPUT_ERROR_COLUMN)
    messages = batch.column(index)
    batch = batch.remove_column(index)
    return batch, messages if messages.null_count < len(messages) else None


def _run_readable(
    runner: BatchRunner,
    batch: pa.RecordBatch,
    unreadable: pa.Array,
    headers: Sequence[Mapping[str, str]] | None,
) -> RunResult:
    """Score the readable rows only; the others fail as ``unreadable`` in their places."""
    import pyarrow.compute as pc

    readable = pc.is_null(unreadable)
    positions = np.flatnonzero(readable.to_numpy(zero_copy_only=False))
    kept = [headers[int(i)] for i in positions] if headers is not None else None
    size = batch.num_rows
    if len(positions):
        scored = runner.run(batch.filter(readable), kept)
    else:  # nothing to score: the model is not called
        scored = RunResult(pa.Table.from_batches([null_outputs(runner.api, 0)]), NO_ERRORS)
    back = np.full(size, -1, dtype=np.int64)  # each input row's place among the readable ones
    back[positions] = np.arange(len(positions))
    outputs = scored.outputs.take(pa.array(back, mask=back < 0))
    if outputs.num_rows != size:  # an API that answers no rows with no columns
        outputs = pa.Table.from_batches([null_outputs(runner.api, size)])
    bad = np.flatnonzero(~readable.to_numpy(zero_copy_only=False))
    failed = error_table(
        bad.tolist(),
        [UNREADABLE_STATUS] * len(bad),
        unreadable.drop_null().to_pylist(),
        ["unreadable"] * len(bad),
    )
    moved = scored.errors.set_column(0, "row", pa.array(positions[scored.errors["row"].to_numpy()]))
    errors = pa.concat_tables([failed, moved.cast(ERROR_SCHEMA)]).sort_by("row")
    responses = {int(positions[row]): response for row, response in scored.responses.items()}
    return RunResult(outputs, errors, responses)
