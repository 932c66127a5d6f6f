"""``kappa run --engine dask``: the local engine's plan, shards, resume and report, scored on Dask
(see :mod:`kappa_batch.engines.remote`)."""

from __future__ import annotations

import logging
from typing import Any

from kappa.errors import KappaError
from kappa_batch.dask import _distributed, ship
from kappa_batch.engines.local import Task, WorkerState, run
from kappa_batch.engines.remote import ShardPlan, remote_work, warm, with_absolute_paths
from kappa_batch.job import Report, ScoreJob
from kappa_batch.workers import dask_share

log = logging.getLogger(__name__)


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
        self.plan = ShardPlan.of(state, job, handle, env_check, shares)
        log.info(
            "scoring on Dask %s: %d workers, %d threads, BLAS/OpenMP threads per worker %s",
            self.client.scheduler.address,
            len(nthreads),
            self.width,
            shares if isinstance(shares, int) else sorted(set((shares or {}).values())),
        )

    def submit(self, task: Task) -> Any:
        return self.client.submit(remote_work, self.plan, task, pure=False)

    def warm(self) -> None:
        """Load the bundle on every worker at once, as a task (so in the thread, with the share of
        threads, that scores): a bundle a worker cannot load fails the run before any shard is sent.
        A worker that leaves meanwhile is not waited for (its task may run on another)."""
        self.client.gather(
            [
                self.client.submit(warm, self.plan, workers=[address], allow_other_workers=True, pure=False)
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


def run_on_dask(job: ScoreJob, scheduler: str | None = None, env_check: str = "fail") -> Report:
    """``kappa run --engine dask [--scheduler tcp://HOST:PORT]``: ``job.workers`` sizes a local cluster."""
    return run(with_absolute_paths(job), lambda state, job_: DaskPool(state, job_, scheduler, env_check))
