"""``BatchRunner``: score Arrow batches with one API of a bundle.

Outputs come back aligned to the input rows (null where a row failed) with an
error table (``row``, ``status``, ``message``, ``kind``: see
:data:`kappa.inference.ErrorKind`). A row the function discards, or
that makes it raise, never fails its batch: the runner scores a raising batch part by
part until the failing rows stand alone (:mod:`kappa_batch.isolate`). Data that does not fit the API
(a missing column) raises :class:`kappa.errors.InputError`, and an API that
returns the wrong number of results fails every row of that batch with a message
naming the API and both lengths.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from kappa.adapters.schema import one_batch
from kappa.errors import InferenceError, InputError
from kappa.inference import ErrorKind, null_outputs, raised_kind
from kappa_batch.cache import load_service

if TYPE_CHECKING:
    from kappa.bundle.manifest import Manifest
    from kappa.inference import BatchOutcome
    from kappa.service import BentoService, InferenceAPI

log = logging.getLogger(__name__)

ERROR_SCHEMA = pa.schema(
    [("row", pa.int64()), ("status", pa.int32()), ("message", pa.string()), ("kind", pa.string())]
)


@dataclass(frozen=True)
class RunResult:
    """Outputs aligned to the input rows, the rows that failed, and the rows whose result asked
    for an HTTP status or headers (row -> (status, headers); online only)."""

    outputs: pa.Table
    errors: pa.Table  # ERROR_SCHEMA, rows in order
    responses: Mapping[int, tuple[int, Mapping[str, str]]] = field(default_factory=dict)

    @property
    def ok_mask(self) -> pa.Array:
        """True for rows that got a prediction."""
        import numpy as np

        ok = np.ones(self.outputs.num_rows, dtype=bool)
        ok[self.errors["row"].to_numpy()] = False
        return pa.array(ok)


def error_table(
    rows: list[int], statuses: list[int], messages: list[str], kinds: list[ErrorKind]
) -> pa.Table:
    return pa.table(
        [
            pa.array(rows, pa.int64()),
            pa.array(statuses, pa.int32()),
            pa.array(messages, pa.string()),
            pa.array(kinds, pa.string()),
        ],
        schema=ERROR_SCHEMA,
    )


def _concat(tables: list[pa.Table]) -> pa.Table:
    """One table; field metadata (e.g. JSON text columns) survives an all-null first part."""
    if len(tables) == 1:
        return tables[0]
    table = pa.concat_tables(tables, promote_options="permissive")
    metadata = {f.name: f.metadata for t in reversed(tables) for f in t.schema if f.metadata}
    if not metadata:
        return table
    schema = pa.schema([f.with_metadata(metadata[f.name]) if f.name in metadata else f for f in table.schema])
    return pa.Table.from_arrays(table.columns, schema=schema)


NO_ERRORS = error_table([], [], [], [])


class BatchRunner:
    """Scores batches with ``api_name`` of ``service`` (a loaded service or a bundle reference)."""

    def __init__(self, service: BentoService | str | os.PathLike[str], api_name: str) -> None:
        from kappa.service import BentoService

        self.manifest: Manifest | None
        if isinstance(service, BentoService):
            self.service, self.manifest = service, service.manifest
        else:
            self.service, self.manifest = load_service(service)
        self.api: InferenceAPI[Any, Any] = self.service.get_inference_api(api_name)
        self._rows = 0  # rows scored, and of them the rows that raised alone: the share of
        self._raised = 0  # raising rows guides the search in the next batch that raises (a hint:
        # threads sharing a runner may lose a count)

    @property
    def bundle_tag(self) -> str:
        return self.manifest.tag if self.manifest else f"{self.service.name}:{self.service.version}"

    def run(
        self, data: pa.RecordBatch | pa.Table, headers: Sequence[Mapping[str, str]] | None = None
    ) -> RunResult:
        """Score ``data``; ``headers`` (online): each row's request headers, for ``task.http_headers``."""
        batch = one_batch(data)
        responses: dict[int, tuple[int, Mapping[str, str]]] = {}
        try:
            outputs, errors = self._score(self.api.infer(batch, headers), 0, responses)
        except InputError:
            raise
        except InferenceError as exc:
            outputs, errors = self._invalid(exc, 0, batch.num_rows)
        except Exception as exc:
            outputs, errors = self._isolate(batch, headers, exc, responses)
        self._rows += batch.num_rows
        return RunResult(outputs=outputs, errors=errors, responses=responses)

    def _isolate(
        self,
        batch: pa.RecordBatch,
        headers: Sequence[Mapping[str, str]] | None,
        raised: Exception,
        responses: dict[int, tuple[int, Mapping[str, str]]],
    ) -> tuple[pa.Table, pa.Table]:
        """Score ``batch``, which raised ``raised``, part by part: only the rows that raise alone fail."""
        from kappa_batch.isolate import isolate

        if batch.num_rows == 0:
            return self._nulls(0), NO_ERRORS
        part = self._parts(batch, headers)

        def score(start: int, stop: int) -> tuple[pa.Table, pa.Table]:
            try:
                outcome = part(start, stop)
            except InferenceError as exc:  # wrong shape of results: that part fails
                return self._invalid(exc, start, stop - start)
            return self._score(outcome, start, responses)

        outputs, errors = [], []
        for start, _, result in isolate(score, batch.num_rows, raised, (self._raised, self._rows)):
            if isinstance(result, Exception):
                self._raised += 1
                message = f"{type(result).__name__}: {result}"
                log.debug("row %d failed: %s", start, message)
                result = self._nulls(1), error_table([start], [500], [message], [raised_kind(result)])
            outputs.append(result[0])
            errors.append(result[1])
        return _concat(outputs), _concat(errors)

    def _parts(
        self, batch: pa.RecordBatch, headers: Sequence[Mapping[str, str]] | None
    ) -> Callable[[int, int], BatchOutcome]:
        """A function scoring rows ``[start, stop)`` of ``batch``. Where the input adapter can slice
        a decoded batch, the batch is decoded once more when the first part is scored (the call
        that raised may have changed its input), and parts are slices of that value; else each
        part is decoded from Arrow."""
        from kappa.adapters.base import InputAdapter
        from kappa.inference import TaskBatch, call, infer

        api = self.api
        rows_of: Callable[[int, int], Any] | None = None
        decided = not api.batch or type(api.input_adapter).slicer is InputAdapter.slicer

        def part(start: int, stop: int) -> BatchOutcome:
            nonlocal rows_of, decided
            if not decided:
                decided, rows_of = True, self._slicer(batch)
            rows = headers[start:stop] if headers is not None else None
            if rows_of is not None:
                try:
                    piece = rows_of(start, stop)
                except Exception:  # noqa: BLE001 - not the rows' fault: decode the parts instead
                    rows_of = None
                else:
                    return call(api, piece, TaskBatch(stop - start, rows))
            return infer(api, batch.slice(start, stop - start), rows)

        return part

    def _slicer(self, batch: pa.RecordBatch) -> Callable[[int, int], Any] | None:
        """The input adapter's slicer of ``batch`` decoded afresh; ``None`` where it has none, or
        decoding left rows out."""
        from kappa.inference import TaskBatch

        adapter = self.api.input_adapter
        tasks = TaskBatch(batch.num_rows)
        try:
            value = adapter.from_arrow(batch, tasks)
            whole = not tasks.discarded() and len(value) == batch.num_rows
            return adapter.slicer(value) if whole else None
        except Exception:  # noqa: BLE001 - the parts are decoded one by one instead
            return None

    def _score(
        self, outcome: BatchOutcome, offset: int, responses: dict[int, tuple[int, Mapping[str, str]]]
    ) -> tuple[pa.Table, pa.Table]:
        """An outcome's outputs and error table, its rows counted from ``offset``."""
        for row, response in outcome.responses.items():
            responses[offset + row] = response
        outputs = pa.Table.from_batches([outcome.outputs])
        if not outcome.errors:
            return outputs, NO_ERRORS
        return outputs, error_table(
            [offset + e.row for e in outcome.errors],
            [e.status for e in outcome.errors],
            [e.message for e in outcome.errors],
            [e.kind for e in outcome.errors],
        )

    def _invalid(self, exc: InferenceError, offset: int, size: int) -> tuple[pa.Table, pa.Table]:
        """Every row of a part whose function returned the wrong number of results fails."""
        rows = list(range(offset, offset + size))
        message = str(exc)
        return self._nulls(size), error_table(rows, [500] * size, [message] * size, ["invalid_output"] * size)

    def _nulls(self, size: int) -> pa.Table:
        return pa.Table.from_batches([null_outputs(self.api, size)])
