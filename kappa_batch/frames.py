"""Scoring whole data frames (Spark ``score()``, Dask ``score()``): the set-up both share, and
the function their workers run on each Arrow batch.

The driver checks the options, ships the bundle, and settles the output columns: the
id column (if any), the API's outputs (declared by its output adapter, or learned once
by scoring real sample rows), and ``_status``/``_message`` with ``errors="column"``. A
worker scores each batch with :func:`kappa_batch.scoring.score_batch` and returns the
columns in that order.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pyarrow as pa

from kappa.errors import InputError
from kappa_batch.cache import check_env_check, learned_schema, load_service
from kappa_batch.rowids import Positions
from kappa_batch.runner import BatchRunner
from kappa_batch.scoring import ERROR_FIELDS, ROW_ID, check_errors, check_id_column, score_batch
from kappa_batch.shipping import BundleHandle, Transport, describe, ship
from kappa_batch.workers import Share, worker_runner


@dataclass(frozen=True)
class FramePlan:
    """What every task needs to score its batches (small: no model, no data)."""

    handle: BundleHandle
    api: str
    id_column: str | None
    errors: str  # "column" or "raise"
    env_check: str
    outputs: pa.Schema  # the API's output columns
    schema: pa.Schema  # the frame's columns: id, outputs, _status/_message
    positions: Positions | None = None  # ids from the rows' places in the input files (Spark jobs)
    carry: tuple[str, ...] = ()  # input columns passed through beside the outputs, not to the model
    threads: Share = None  # each worker process's thread pools (kappa_batch.workers.hold_share)

    def score(self, batch: pa.RecordBatch, ids: pa.Array | None = None) -> list[pa.Array]:
        """On a worker: one batch of the input frame scored, as the columns of :attr:`schema`."""
        carried = [batch.column(name) for name in self.carry]
        if self.carry:
            batch = batch.drop_columns(list(self.carry))
        runner = worker_runner(self.handle, self.api, self.env_check, self.threads)
        scored = score_batch(runner, batch, id_column=self.id_column, ids=ids)
        if self.errors == "raise":
            scored.raise_first_error(self.handle.tag, self.api)
        with_id = self.id_column is not None or self.positions is not None
        return scored.columns(self.outputs, with_id, self.errors == "column") + carried

    def score_all(self, batches: Iterator[pa.RecordBatch]) -> Iterator[list[pa.Array]]:
        """On a worker: every batch of one task (ids assigned in order when the plan has positions)."""
        if self.positions is None:
            for batch in batches:
                yield self.score(batch)
        else:
            for ids, batch in self.positions.assign(batches):
                yield self.score(batch, ids)


def plan(
    bundle: str | os.PathLike[str],
    api: str,
    transport: Transport | None,
    *,
    columns: list[str],
    id_field: Callable[[str], pa.Field],
    id_column: str | None,
    errors: str,
    env_check: str,
    outputs: pa.Schema | None,
    input_key: str,
    sample: Callable[[], pa.RecordBatch | pa.Table],
    hint: str,
    positions: Positions | None = None,
    carry: tuple[pa.Field, ...] = (),
    expected_digest: str | None = None,
    threads: Share = None,
) -> FramePlan:
    """Check the options, ship the bundle and settle the columns (see the module docstring).
    ``outputs``: the API's output columns when the caller knows them (Dask ``meta=``);
    ``positions``: ids (:data:`~kappa_batch.scoring.ROW_ID`) from the input files' row positions;
    ``carry``: input columns passed through after the others (e.g. the columns a job partitions by);
    ``expected_digest``: the digest the bundle must have (what the job resolved at its start); the
    bundle that is shipped, and sampled here, is that one; ``threads``: the workers' thread pools
    (None: the engine's share, see :func:`kappa_batch.workers.hold_share`)."""
    check_errors(errors)
    check_env_check(env_check)
    check_id_column(id_column, columns)
    handle = ship(bundle, transport, expected_digest)
    if outputs is None:
        outputs = output_schema(bundle, api, input_key, sample, hint, handle.digest)
    fields = list(outputs)
    if id_column is not None:
        fields.insert(0, id_field(id_column))
    elif positions is not None:
        fields.insert(0, pa.field(ROW_ID, pa.int64()))
    if errors == "column":
        fields += ERROR_FIELDS
    fields += carry
    names = tuple(f.name for f in carry)
    return FramePlan(
        handle, api, id_column, errors, env_check, outputs, pa.schema(fields), positions, names, threads
    )


def output_schema(
    bundle: str | os.PathLike[str],
    api: str,
    input_key: str,
    sample: Callable[[], pa.RecordBatch | pa.Table],
    hint: str,
    expected_digest: str | None = None,
) -> pa.Schema:
    """The API's output columns: declared in the bundle's manifest, or learned by scoring ``sample()``
    (real rows of the input, never made-up ones) here once per bundle, API and ``input_key``
    (the input's columns and types)."""
    from kappa.bundle.manifest import schema_from_dict

    path, manifest = describe(bundle, expected_digest)
    declared = schema_from_dict(manifest.api(api).output_schema)
    if declared is not None:
        return declared

    def learn() -> pa.Schema:

        service, _ = load_service(path, manifest.digest)
        result = BatchRunner(service, api).run(sample())
        if result.errors.num_rows == result.outputs.num_rows:
            why = result.errors.to_pylist()[0]["message"] if result.errors.num_rows else "the input is empty"
            raise InputError(
                f"cannot tell the output columns of API {api}: "
                f"no sampled row got a prediction ({why}); {hint}"
            )
        return result.outputs.schema

    return learned_schema(path, manifest.digest, api, input_key, learn)
