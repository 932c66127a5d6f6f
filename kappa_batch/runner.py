"""``BatchRunner``: score Arrow batches with one API of a bundle.

Outputs come back aligned to the input rows (null where a row failed) with an
error table (``row``, ``status``, ``message``, ``kind``: see
:data:`kappa.inference.ErrorKind`). A row the function discards, or
that makes it raise, never fails its batch: the runner splits a raising batch in
halves until the failing rows stand alone. Data that does not fit the API
(a missing column) raises :class:`kappa.errors.InputError`, and an API that
returns the wrong number of results fails every row of that batch with a message
naming the API and both lengths.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from kappa.adapters.schema import one_batch
from kappa.errors import InferenceError, InputError
from kappa.inference import ErrorKind, null_outputs, raised_kind
from kappa_batch.cache import load_service

if TYPE_CHECKING:
    from kappa.bundle.manifest import Manifest
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

    @property
    def bundle_tag(self) -> str:
        return self.manifest.tag if self.manifest else f"{self.service.name}:{self.service.version}"

    def run(
        self, data: pa.RecordBatch | pa.Table, headers: Sequence[Mapping[str, str]] | None = None
    ) -> RunResult:
        """Score ``data``; ``headers`` (online): each row's request headers, for ``task.http_headers``."""
        batch = one_batch(data)
        responses: dict[int, tuple[int, Mapping[str, str]]] = {}
        outputs, errors = self._run(batch, 0, headers, responses)
        return RunResult(outputs=outputs, errors=errors, responses=responses)

    def _run(
        self,
        batch: pa.RecordBatch,
        offset: int,
        headers: Sequence[Mapping[str, str]] | None,
        responses: dict[int, tuple[int, Mapping[str, str]]],
    ) -> tuple[pa.Table, pa.Table]:
        row_headers = headers[offset : offset + batch.num_rows] if headers is not None else None
        try:
            outcome = self.api.infer(batch, row_headers)
        except InputError:
            raise
        except InferenceError as exc:  # wrong shape of results: the whole batch fails
            rows = list(range(offset, offset + batch.num_rows))
            size = len(rows)
            return self._nulls(size), error_table(
                rows, [500] * size, [str(exc)] * size, ["invalid_output"] * size
            )
        except Exception as exc:
            if batch.num_rows <= 1:
                message = f"{type(exc).__name__}: {exc}"
                log.debug("row %d failed: %s", offset, message)
                size = batch.num_rows
                errors = error_table(
                    [offset] * size, [500] * size, [message] * size, [raised_kind(exc)] * size
                )
                return self._nulls(size), errors
            half = batch.num_rows // 2
            left = self._run(batch.slice(0, half), offset, headers, responses)
            right = self._run(batch.slice(half), offset + half, headers, responses)
            return _concat([left[0], right[0]]), _concat([left[1], right[1]])
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

    def _nulls(self, size: int) -> pa.Table:
        return pa.Table.from_batches([null_outputs(self.api, size)])
