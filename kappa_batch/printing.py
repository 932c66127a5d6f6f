"""`kappa run` without `--output-file`: predictions printed as JSON (no output files), through the
same scorer as every engine; the API's output adapter says how its rows print."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from kappa.errors import InputError
from kappa_batch.batching import rebatch
from kappa_batch.engines.local import max_error_rate, new_report, open_source
from kappa_batch.io import InputSource, read_planned
from kappa_batch.job import Report, ScoreJob
from kappa_batch.runner import BatchRunner
from kappa_batch.scoring import ScoredBatch, score_batch


def score_inline(job: ScoreJob) -> tuple[Report, list[Any], list[dict[str, Any]]]:
    """Score ``--input`` JSON in memory (no output files), for printing: see :func:`printed_rows`."""
    runner = BatchRunner(job.bundle, job.api)
    source, id_column = open_source(job, runner)
    report = new_report(job, runner, source)
    start = time.monotonic()
    batch = next(iter(rebatch(source.batches, max(job.batch_size, 1))), None)
    if batch is None:
        raise InputError("--input holds no rows")
    scored = score_batch(runner, batch, id_column=id_column, reader_errors=True)
    report.add(scored.rows_in, scored.rows_out, scored.rows_error)
    report.shards = 1
    report.finish(time.monotonic() - start, max_error_rate(job))
    return report, *printed_rows(scored, runner)


def printed_rows(scored: ScoredBatch, runner: BatchRunner) -> tuple[list[Any], list[dict[str, Any]]]:
    """One JSON value per row in input order, as the API's output adapter prints it (``None``
    for a failed row), and the failed rows by id (what standard error shows)."""
    values = runner.api.output_adapter.to_json_rows(scored.result.outputs)
    errors = scored.errors()
    failed = scored.result.errors["row"].to_pylist()
    for row in failed:
        values[row] = None
    failures = [
        {"row": e[scored.id_name], "status": e["_status"], "error": e["_message"]} for e in errors.to_pylist()
    ]
    return values, failures


@dataclass
class Printed:
    """What :func:`stream_json` printed: the run's report once the stream is exhausted."""

    report: Report | None = None


def stream_json(job: ScoreJob, printed: Printed) -> Iterator[tuple[list[Any], list[dict[str, Any]]]]:
    """Score ``--input-file`` batch by batch for printing (no output files): per batch, one JSON
    value per row in input order (``None`` for a failed row) and the failed rows (by id)."""
    runner = BatchRunner(job.bundle, job.api)
    source, id_column = open_source(job, runner)
    limit = max_error_rate(job)  # a bad setting fails before any scoring
    report = new_report(job, runner, source)
    start = time.monotonic()
    for offset, batch in _batches(job, source):
        scored = score_batch(runner, batch, offset=offset, id_column=id_column, reader_errors=True)
        report.add(scored.rows_in, scored.rows_out, scored.rows_error)
        report.shards += 1
        yield printed_rows(scored, runner)
    report.finish(time.monotonic() - start, limit)
    printed.report = report


def _batches(job: ScoreJob, source: InputSource) -> Iterator[tuple[int, pa.RecordBatch]]:
    """(offset, batch) over the whole input, in order."""
    if source.plan is not None:
        for shard in source.plan:
            offset = shard.offset
            for batch in read_planned(source.fs, shard, job.batch_size):
                yield offset, batch
                offset += batch.num_rows
        return
    offset = 0
    for batch in rebatch(source.batches, job.batch_size):
        yield offset, batch
        offset += batch.num_rows
