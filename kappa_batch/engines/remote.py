"""What the local engine's shards need when a cluster scores them (``--engine dask``, ``--engine
spark``): a small plan every task carries, and the two functions a worker runs.

The driver plans the shards, skips the ones a resumed run already has, and commits the
output exactly as ``kappa run`` does; each shard is a task that reads its rows, scores them
with the worker process's cached runner and writes its part file in one atomic rename. A
task lost with a worker is run again by the cluster and rewrites the same part file, so rows
are never lost or duplicated. The output (and a non-Parquet input that the driver streams)
must be reachable by the workers: a shared folder or a URL.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import unquote, urlsplit

from kappa.errors import KappaError
from kappa_batch.engines.local import Task, WorkerState, write_task
from kappa_batch.job import ScoreJob
from kappa_batch.shards import RUN_FILE, OutputSpec, ShardedOutput
from kappa_batch.shipping import BundleHandle
from kappa_batch.workers import Share, worker_runner


@dataclass(frozen=True)
class ShardPlan:
    """What a worker needs to score and write shards (small: no model, no data)."""

    handle: BundleHandle
    api: str
    env_check: str
    spec: OutputSpec
    id_column: str | None
    fs: Any
    batch_size: int
    threads: Share  # BLAS/OpenMP threads of each worker, per Dask worker address, or None: spark.task.cpus

    @classmethod
    def of(
        cls, state: WorkerState, job: ScoreJob, handle: BundleHandle, env_check: str, threads: Share
    ) -> ShardPlan:
        """The plan of a run whose driver holds ``state``, the bundle shipped as ``handle``."""
        return cls(
            handle,
            job.api,
            env_check,
            state.output.spec,
            state.id_column,
            state.fs,
            state.batch_size,
            threads,
        )


def remote_work(plan: ShardPlan, task: Task) -> tuple[int, int, int]:
    """Runs on a worker: score one shard (the runner comes from the process's cache) and write it."""
    runner = worker_runner(plan.handle, plan.api, plan.env_check, plan.threads)
    state = WorkerState(
        runner, ShardedOutput(plan.spec), plan.id_column, plan.fs, plan.batch_size, in_worker_pool=True
    )
    return write_task(state, task)


def warm(plan: ShardPlan) -> None:
    """Runs on a worker before its first shard: loads the bundle into the process's cache, and
    checks that the output the driver started (its run record) is there for this worker too."""
    output = ShardedOutput(plan.spec)
    if not output.fs.exists(f"{output.state}/{RUN_FILE}"):
        raise KappaError(
            f"the worker on {socket.gethostname()} does not see the output {plan.spec.url}: every worker "
            "must see it (a folder shared by all of them, at the same path), or write to a URL (s3://...)"
        )
    worker_runner(plan.handle, plan.api, plan.env_check, plan.threads)


def _absolute(url: str | None) -> str | None:
    """Local paths (and ``file:`` URIs) made absolute paths: workers need not share the driver's
    working directory."""
    if url is not None and url.lower().startswith("file:"):
        url = unquote(urlsplit(url).path) + ("/" if url.endswith("/") else "")
    if url is None or "://" in url:
        return url
    absolute = os.path.abspath(url)
    return absolute + "/" if url.endswith("/") else absolute


def with_absolute_paths(job: ScoreJob) -> ScoreJob:
    return replace(
        job,
        input_file=_absolute(job.input_file),
        output_file=_absolute(job.output_file),
        errors_file=_absolute(job.errors_file),
    )
