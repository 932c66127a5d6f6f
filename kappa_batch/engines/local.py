"""The local engine behind ``kappa run``: stream the input, score shard by shard, commit.

With ``workers > 1`` the shards are scored and written by forked worker processes
that inherit the already-loaded model, so no worker loads or unpickles it again.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from contextlib import nullcontext
from dataclasses import dataclass, replace
from typing import Any, Protocol

import pyarrow as pa

from kappa import threads as pools
from kappa.errors import InputError, KappaError, is_store_error, store_failure
from kappa_batch.batching import rebatch
from kappa_batch.io import (
    InputSource,
    PlannedShard,
    binary_source,
    file_source,
    inline_source,
    parquet_file,
    read_planned,
)
from kappa_batch.job import Report, ScoreJob, error_rate_limit
from kappa_batch.progress import Progress
from kappa_batch.runner import NO_ERRORS, BatchRunner, RunResult
from kappa_batch.scoring import ERROR_FIELDS, ROW_ID, ScoredBatch, score_batch
from kappa_batch.shards import OutputSpec, ShardedOutput

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class WorkerState:
    """What a worker needs; set in the parent before forking, so workers inherit it."""

    runner: BatchRunner
    output: ShardedOutput
    id_column: str | None
    fs: Any
    batch_size: int
    in_worker_pool: bool = False


_state: WorkerState | None = None
Task = PlannedShard | tuple[int, int, Any]  # a planned shard, or (index, offset, batch or IPC bytes)


def _to_ipc(batch: pa.RecordBatch) -> Any:
    """IPC bytes of a batch: unlike pickling, this copies only the rows of a sliced batch."""
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, batch.schema) as writer:
        writer.write_batch(batch)
    return sink.getvalue()


@dataclass(frozen=True)
class ShardResult:
    """A scored shard as written: the rows that got a prediction, the failed rows, rows read."""

    outputs: pa.Table
    errors: pa.Table
    rows_in: int

    @classmethod
    def of(cls, parts: list[ScoredBatch]) -> ShardResult:
        if len(parts) == 1:
            return cls(parts[0].outputs(), parts[0].errors(), parts[0].rows_in)
        return cls(
            pa.concat_tables([p.outputs() for p in parts], promote_options="permissive"),
            pa.concat_tables([p.errors() for p in parts], promote_options="permissive"),
            sum(p.rows_in for p in parts),
        )


def _score_task(state: WorkerState, task: Task) -> tuple[int, ShardResult]:
    if isinstance(task, PlannedShard):
        parts, offset = [], task.offset
        for batch in read_planned(state.fs, task, state.batch_size, use_threads=not state.in_worker_pool):
            parts.append(
                score_batch(state.runner, batch, offset=offset, id_column=state.id_column, reader_errors=True)
            )
            offset += batch.num_rows
        if not parts:  # a row group without rows: empty tables, with the id column's own type
            id_type = pa.int64()
            if state.id_column is not None:
                schema = parquet_file(state.fs, task.file).schema_arrow
                if state.id_column in schema.names:
                    id_type = schema.field(state.id_column).type
            nothing = RunResult(pa.table({}), NO_ERRORS)
            parts = [ScoredBatch(state.id_column or ROW_ID, nothing, 0, pa.array([], id_type))]
        return task.index, ShardResult.of(parts)
    index, offset, batch = task
    if not isinstance(batch, pa.RecordBatch):
        batch = pa.ipc.open_stream(batch).read_next_batch()
    return index, ShardResult.of(
        [score_batch(state.runner, batch, offset=offset, id_column=state.id_column, reader_errors=True)]
    )


def write_task(state: WorkerState, task: Task) -> tuple[int, int, int]:
    """Score one shard and write it; returns rows in, out and in error."""
    index, shard = _score_task(state, task)
    state.output.write_shard(index, shard.outputs, shard.errors)
    errors = int(shard.errors.num_rows)
    return shard.rows_in, shard.rows_in - errors, errors


def _work(task: Task) -> tuple[int, int, int]:
    """``write_task`` with the state this process inherited (a forked worker, or inline)."""
    assert _state is not None, "worker started without its state"
    return write_task(_state, task)


class Pending(Protocol):
    """A shard being scored elsewhere (a ``concurrent.futures`` or Dask future)."""

    def result(self) -> tuple[int, int, int]: ...


class ShardPool(Protocol):
    """Where shards are scored besides this process: forked workers, or a Dask cluster."""

    width: int  # how many shards it scores at once
    threads: int  # BLAS/OpenMP threads of each of its processes (the fewest, where they differ)
    engine: str

    def submit(self, task: Task) -> Pending: ...

    def warm(self) -> None:
        """Every worker ready to score, its model loaded: raises what a worker's load raises."""

    def close(self) -> None: ...


class ForkedPool:
    """Forked worker processes that inherit the loaded model (``kappa run --workers N``)."""

    engine = "local"

    def __init__(self, workers: int, threads: int) -> None:
        self.width, self.threads = workers, threads
        self._pool = ProcessPoolExecutor(
            workers,
            mp_context=multiprocessing.get_context("fork"),
            initializer=_start_worker,
            initargs=(os.getpid(), threads),
        )
        list(self._pool.map(_ready, range(workers)))

    def submit(self, task: Task) -> Future[tuple[int, int, int]]:
        return self._pool.submit(_work, task)

    def warm(self) -> None:
        """Nothing to do: forked workers inherit the model this process loaded."""

    def close(self) -> None:
        self._pool.shutdown(cancel_futures=True)


PoolFactory = Callable[[WorkerState, ScoreJob], ShardPool]


def die_with_parent(parent: int) -> None:
    """In a worker: exit when the process that started it dies (even by ``kill -9``).

    Linux delivers SIGKILL on the parent's death (``PR_SET_PDEATHSIG``); elsewhere, and for
    a parent that died before that was set, a daemon thread notices the new parent id.
    """
    import ctypes
    import signal
    import sys
    import threading

    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG
        except (OSError, AttributeError):  # pragma: no cover - no prctl
            pass

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(1)

    if os.getppid() != parent:
        os._exit(1)
    threading.Thread(target=watch, name="kappa-parent-watch", daemon=True).start()


def _start_worker(parent: int, threads: int) -> None:
    """In a forked worker: exit with the parent, keep to its share of the cores, and open its own
    file systems: an object store's client (s3fs) cannot be used across a fork."""
    global _state
    die_with_parent(parent)
    pools.limit(threads)
    if _state is not None:
        _state = replace(_state, fs=_reopened(_state.fs), output=ShardedOutput(_state.output.spec))


def _reopened(fs: Any) -> Any:
    """``fs`` made anew in this process (fsspec caches instances per process id), or the inherited
    one where its class cannot be made again from its arguments."""
    if fs is None:
        return None
    from kappa.repository.s3session import in_this_process

    try:
        return type(fs)(*getattr(fs, "storage_args", ()), **in_this_process(fs.storage_options))
    except Exception as exc:  # noqa: BLE001 - the inherited client may still work (a local folder)
        log.debug("worker keeps the parent's %s: %s", type(fs).__name__, exc)
        return fs


def _ready(_: int) -> bool:
    return _state is not None


def open_source(job: ScoreJob, runner: BatchRunner) -> tuple[InputSource, str | None]:
    """The job's input as batches, and the id column to use."""
    from kappa.adapters import JsonInput
    from kappa.adapters.files import FileInput

    adapter = runner.api.input_adapter
    if job.input_text is not None:
        return inline_source(job.input_text, adapter), job.id_column
    if job.input_file is None:
        raise InputError("give the input with --input JSON or --input-file PATH")
    if isinstance(adapter, FileInput):
        return binary_source(job.input_file, adapter.column, job.batch_size), job.id_column or "path"
    declared = adapter.arrow_schema() if hasattr(adapter, "arrow_schema") else None
    json_text = isinstance(adapter, JsonInput)
    source = file_source(
        job.input_file, job.input_format, job.batch_size, declared, job.id_column, json_text=json_text
    )
    return source, job.id_column


def _run_params(
    job: ScoreJob, runner: BatchRunner, source: InputSource, id_column: str | None, fmt: str
) -> dict[str, Any]:
    from kappa_batch.io import fingerprint

    files = fingerprint(source.fs, source.files) if source.files and source.fs is not None else []
    return {
        "input_files": files,
        "bundle": runner.bundle_tag,
        "bundle_digest": runner.manifest.digest if runner.manifest else None,
        "api": job.api,
        "input": job.input_file if job.input_text is None else f"inline:{job.input_text}",
        "batch_size": job.batch_size,
        "format": fmt,
        "id_column": id_column,
        "error_columns": [f.name for f in ERROR_FIELDS],  # an output started with others cannot resume
    }


def max_error_rate(job: ScoreJob) -> float:
    """``--max-error-rate``, or the ``run.max_error_rate`` setting (default 0.5)."""
    return error_rate_limit(job.max_error_rate)


def new_report(job: ScoreJob, runner: BatchRunner, source: InputSource) -> Report:
    return Report(
        bundle=runner.bundle_tag,
        digest=runner.manifest.digest if runner.manifest else "",
        api=job.api,
        input=source.description,
        workers=job.workers or 1,
        threads_per_worker=pools.current() or pools.share(job.workers or 1),
    )


def auto_workers(source: InputSource, batch_size: int, cores: int | None = None) -> int:
    """``--workers auto``: one process per core, but no more than the input has shards (a small
    input is scored in this process, with no pool to start). A stream of unknown length (CSV,
    JSON Lines) gets a pool only from :data:`AUTO_STREAM_BYTES` of input files on."""
    cores = cores or pools.available_cores()
    if source.plan is not None:
        shards = len(source.plan)
    elif source.total_rows is not None:
        shards = -(-source.total_rows // batch_size)
    else:
        shards = cores if _input_bytes(source) >= AUTO_STREAM_BYTES else 1
    return max(1, min(cores, shards))


AUTO_STREAM_BYTES = 64 * 1024 * 1024


def _input_bytes(source: InputSource) -> int:
    if source.fs is None or not source.files:
        return 0
    try:
        return sum(int(source.fs.size(f) or 0) for f in source.files)
    except (OSError, ValueError, TypeError):  # a size the store does not give: assume a large input
        return AUTO_STREAM_BYTES


def run(job: ScoreJob, pool_factory: PoolFactory | None = None) -> Report:
    """Score ``job.input_*`` into ``job.output_file``; returns the report (also written to --report).

    Shards are scored here, by forked workers (``job.workers > 1``), or by the pool that
    ``pool_factory`` makes (the Dask engine); planning, resume and commit stay here.
    """
    global _state
    if job.output_file is None:
        raise InputError(
            "give --output-file PATH (or leave it out on the command line to print the predictions)"
        )
    if (job.workers is not None and job.workers < 1) or job.batch_size < 1:
        raise InputError("--workers and --batch-size must be at least 1")
    limit = max_error_rate(job)  # a bad setting fails before any scoring
    threads = pools.configured(job.threads_per_worker)  # a count below one fails here too
    runner = BatchRunner(job.bundle, job.api)
    digest = runner.manifest.digest if runner.manifest else ""
    log.info("scoring with %s (%s), api %s", runner.bundle_tag, digest[:19], job.api)
    spec = OutputSpec.parse(job.output_file, job.output_format, job.errors_file)
    output = ShardedOutput(spec)
    source, id_column = open_source(job, runner)
    workers = job.workers or auto_workers(source, job.batch_size)
    job = replace(job, workers=workers, threads_per_worker=threads)
    assert job.workers is not None
    in_pool = job.workers > 1 or pool_factory is not None
    _state = WorkerState(runner, output, id_column, source.fs, job.batch_size, in_worker_pool=in_pool)
    share = pools.share(job.workers, threads)
    scores_here = job.workers == 1 and pool_factory is None  # else this process reads and dispatches
    try:
        with pools.limited(share) if scores_here else nullcontext(share):
            return _run(job, runner, spec, output, source, id_column, limit, pool_factory, share)
    finally:
        _state = None


def _run(
    job: ScoreJob,
    runner: BatchRunner,
    spec: OutputSpec,
    output: ShardedOutput,
    source: InputSource,
    id_column: str | None,
    limit: float,
    pool_factory: PoolFactory | None,
    share: int,
) -> Report:
    """:func:`run` after its set-up; ``run`` clears the workers' state when this returns."""
    assert _state is not None and job.workers is not None
    pool: ShardPool | None = None
    try:
        params = _run_params(job, runner, source, id_column, spec.fmt)
        done = output.prepare(params, job.resume, job.overwrite)
        committed = output.committed() if job.resume else None
        if committed is not None:
            log.info("%s is already complete; nothing to resume", spec.url)
            return Report(
                **{k: v for k, v in committed["report"].items() if k in Report.__dataclass_fields__}
            )
        if pool_factory is not None:
            pool = pool_factory(_state, job)
        elif job.workers > 1:  # forked workers inherit the loaded model and the state above
            pool = ForkedPool(job.workers, share)
        report = new_report(job, runner, source)
        report.output, report.errors_file = spec.url, spec.errors_url
        if pool is not None:
            report.engine = pool.engine
        progress: Progress | None = None
        try:
            if pool is not None:  # the run's seconds count scoring, not the workers' model loads
                pool.warm()  # a cluster's workers have joined by then: its width is known
                report.workers, report.threads_per_worker = pool.width, pool.threads
            start = time.monotonic()
            progress = Progress(source.total_rows, job.progress)
            _score_all(job, output, source, done, report, progress, pool)
            report.finish(time.monotonic() - start, limit)
            output.commit(report.shards, report.to_dict(), report.succeeded)
        except Exception as exc:  # the lineage records a run that broke off, too
            stopped = _stopped(exc, spec.url) if is_store_error(exc) else exc
            report.fail(str(stopped) if isinstance(stopped, KappaError) else type(exc).__name__)
            report.publish()
            if stopped is exc:
                raise
            raise stopped from None
        finally:
            if progress is not None:
                progress.close()
    finally:
        if pool is not None:
            pool.close()
    if job.report_file:
        report.write(job.report_file)
    report.publish()
    return report


def _tasks(job: ScoreJob, source: InputSource, pool: ShardPool | None) -> Iterator[tuple[int, int, Task]]:
    """(index, rows, task) for every shard: planned ones, or batches cut from the stream."""
    if source.plan is not None:
        for shard in source.plan:
            yield shard.index, shard.rows, shard
        return
    for index, batch in enumerate(rebatch(source.batches, job.batch_size)):
        payload = _to_ipc(batch) if pool is not None else batch
        yield index, batch.num_rows, (index, index * job.batch_size, payload)


def _score_all(
    job: ScoreJob,
    output: ShardedOutput,
    source: InputSource,
    done: set[int],
    report: Report,
    progress: Progress,
    pool: ShardPool | None,
) -> None:
    inflight: deque[Pending] = deque()

    def account(rows_in: int, rows_out: int, rows_error: int) -> None:
        report.add(rows_in, rows_out, rows_error)
        progress.update(rows_in, rows_error)

    for index, rows, task in _tasks(job, source, pool):
        report.shards += 1
        if index in done:
            errors = _error_rows(output, index)
            report.shards_resumed += 1
            account(rows, rows - errors, errors)
        elif pool is None:
            account(*_work(task))
        else:
            inflight.append(pool.submit(task))
            while len(inflight) >= 2 * pool.width:
                account(*_result(inflight.popleft(), job))
    while inflight:
        account(*_result(inflight.popleft(), job))


def _stopped(exc: Exception, url: str) -> KappaError:
    """A file or store error mid-run (a full disk, a store that went away) as one line that says
    what is kept and how to go on."""
    detail, filename = store_failure(exc)
    where = f" ({filename})" if filename else ""
    return KappaError(
        f"the run into {url} stopped: {detail}{where}; the shards written so far are "
        "kept and whole: fix the cause (free space, bring the store back), then run the same command "
        "with --resume"
    )


def _result(pending: Pending, job: ScoreJob) -> tuple[int, int, int]:
    """A shard's counts; a forked worker that died (``kill -9``, the out-of-memory killer) ends
    the run with one line instead of ``BrokenProcessPool``'s traceback."""
    from concurrent.futures.process import BrokenProcessPool

    try:
        return pending.result()
    except BrokenProcessPool:
        raise KappaError(
            f"a scoring worker process died (killed, or out of memory) during the run into "
            f"{job.output_file}; the shards it finished are kept: run the same command with --resume "
            "to score the rest"
        ) from None


def _error_rows(output: ShardedOutput, index: int) -> int:
    import pyarrow.parquet as pq

    with output.fs.open(output.error_path(index), "rb") as handle:
        return int(pq.ParquetFile(handle).metadata.num_rows)
