"""``kappa run --engine dask``: the local engine's plan, shards, resume and report, scored on Dask.

The driver plans the shards, skips the ones a resumed run already has, and commits
the output exactly as ``kappa run`` does; each shard is a Dask task that reads its
rows, scores them with the worker's cached runner and writes its part file in one
atomic rename. A task lost with a worker is run again by Dask and rewrites the same
part file, so rows are never lost or duplicated. The output (and a non-Parquet input
that the driver streams) must be reachable by the workers: a shared folder or a URL.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, replace
from typing import Any

from kappa.errors import KappaError
from kappa_batch.dask import _distributed, ship
from kappa_batch.engines.local import Task, WorkerState, run, write_task
from kappa_batch.job import Report, ScoreJob
from kappa_batch.shards import OutputSpec, ShardedOutput
from kappa_batch.shipping import BundleHandle
from kappa_batch.workers import Share, dask_share, worker_runner

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ShardPlan:
    """What a Dask worker needs to score and write shards (small: no model, no data)."""

    handle: BundleHandle
    api: str
    env_check: str
    spec: OutputSpec
    id_column: str | None
    fs: Any
    batch_size: int
    threads: Share  # BLAS/OpenMP threads of every worker, or per worker address


def _remote_work(plan: ShardPlan, task: Task) -> tuple[int, int, int]:
    """Runs on a Dask worker: score one shard (the runner comes from the process's cache) and write it."""
    runner = worker_runner(plan.handle, plan.api, plan.env_check, plan.threads)
    state = WorkerState(
        runner, ShardedOutput(plan.spec), plan.id_column, plan.fs, plan.batch_size, in_worker_pool=True
    )
    return write_task(state, task)


def _warm(plan: ShardPlan) -> None:
    """Runs on a Dask worker before its first shard: loads the bundle into the process's cache."""
    worker_runner(plan.handle, plan.api, plan.env_check, plan.threads)


class DaskPool:
    """Shards as tasks on a Dask cluster: the one at ``scheduler``, or a local one started here."""

    engine = "dask"

    def __init__(self, state: WorkerState, job: ScoreJob, scheduler: str | None, env_check: str) -> None:
        distributed = _distributed()
        if not log.isEnabledFor(logging.DEBUG):  # Dask's own INFO lines drown the run's (see --verbose)
            logging.getLogger("distributed").setLevel(logging.WARNING)
        self.cluster = None
        try:
            if scheduler:
                self.client = distributed.Client(scheduler, timeout="20s")
            else:
                self.cluster = _local_cluster(distributed, job.workers)
                self.client = distributed.Client(self.cluster)
        except OSError as exc:
            raise KappaError(
                f"cannot reach the Dask scheduler at {scheduler}: {exc} (start one with `dask scheduler` "
                "and workers with `dask worker ADDRESS`, or leave out --scheduler for a local cluster)"
            ) from None
        nthreads = self.client.nthreads()
        if not nthreads:
            self.client.wait_for_workers(1, timeout=60)
            nthreads = self.client.nthreads()
        self.width = max(1, sum(nthreads.values()))
        shares = dask_share(self.client, job.threads_per_worker)
        self.threads = shares if isinstance(shares, int) else min((shares or {}).values(), default=1)
        digest = state.runner.manifest.digest if state.runner.manifest else None
        handle = ship(job.bundle, self.client, digest)  # the version the run resolved at its start
        self.plan = ShardPlan(
            handle,
            job.api,
            env_check,
            state.output.spec,
            state.id_column,
            state.fs,
            state.batch_size,
            shares,
        )
        log.info(
            "scoring on Dask %s: %d workers, %d threads, BLAS/OpenMP threads per worker %s",
            self.client.scheduler.address,
            len(nthreads),
            self.width,
            shares if isinstance(shares, int) else sorted(set((shares or {}).values())),
        )

    def submit(self, task: Task) -> Any:
        return self.client.submit(_remote_work, self.plan, task, pure=False)

    def warm(self) -> None:
        """Load the bundle on every worker at once, as a task (so in the thread, with the share of
        threads, that scores): a bundle a worker cannot load fails the run before any shard is sent.
        A worker that leaves meanwhile is not waited for (its task may run on another)."""
        self.client.gather(
            [
                self.client.submit(_warm, self.plan, workers=[address], allow_other_workers=True, pure=False)
                for address in self.client.nthreads()
            ]
        )

    def close(self) -> None:
        self.client.close()
        if self.cluster is not None:
            self.cluster.close()


def _local_cluster(distributed: Any, workers: int | None) -> Any:
    """Kappa's own cluster for one run: single-threaded worker processes on loopback. Their
    statistical profiler is off: it samples the scoring thread's stack every 10 ms (10-15% of a
    worker's time measured here) for a dashboard that nobody reaches in a run's lifetime."""
    import dask

    with dask.config.set({"distributed.worker.profile.enabled": False}):
        return distributed.LocalCluster(
            n_workers=workers,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            dashboard_address=None,
            scheduler_kwargs={"dashboard_address": "127.0.0.1:0"},  # its HTTP routes: no fixed port
        )


def _absolute(url: str | None) -> str | None:
    """Local paths made absolute: Dask workers need not share the driver's working directory."""
    if url is None or "://" in url:
        return url
    absolute = os.path.abspath(url)
    return absolute + "/" if url.endswith("/") else absolute


def run_on_dask(job: ScoreJob, scheduler: str | None = None, env_check: str = "fail") -> Report:
    """``kappa run --engine dask [--scheduler tcp://HOST:PORT]``: ``job.workers`` sizes a local cluster."""
    job = replace(
        job,
        input_file=_absolute(job.input_file),
        output_file=_absolute(job.output_file),
        errors_file=_absolute(job.errors_file),
    )
    return run(job, lambda state, job_: DaskPool(state, job_, scheduler, env_check))
