"""``kappa run --engine spark``: the local engine's plan, shards, resume and report, scored by Spark's
executors (see :mod:`kappa_batch.engines.remote`).

Each shard is a Spark job of one task, whose Python worker reads the shard's rows itself
(Kappa's readers: local paths and fsspec URLs), scores them with the runner it keeps loaded and
writes the shard. The rows never pass through the executor's JVM: on Spark's own path (a read,
``mapInArrow``, a write) the JVM's Arrow round trip alone cost more than an RF model's scoring,
on threads beside the Python worker (bench/RESULTS.md runs 34-35). Spark still schedules every
task, retries a task lost with its executor, and starts executors where the cluster has cores.

What needs Spark's own readers and writers stays on :mod:`kappa_batch.engines.spark_job`:
inputs other than Parquet (the driver would stream their rows into the tasks), Hadoop file
systems (``hdfs://``, ``s3a://``, ... and plain paths where Hadoop's default file system is not
the local one) and ``--partition-by``.
"""

from __future__ import annotations

import logging
import re
from concurrent.futures import Future, ThreadPoolExecutor
from functools import partial
from typing import Any
from urllib.parse import urlsplit

from kappa.errors import InputError, KappaError
from kappa.threads import configured
from kappa_batch.engines.local import Task, WorkerState, run
from kappa_batch.engines.remote import ShardPlan, remote_work, warm, with_absolute_paths
from kappa_batch.io import PlannedShard, input_kind
from kappa_batch.job import Report, ScoreJob

log = logging.getLogger(__name__)

MAX_SLOTS = 256
# schemes only Spark's (Hadoop's) file systems read; plain paths and fsspec URLs are Kappa's own
HADOOP_SCHEMES = frozenset({"hdfs", "viewfs", "s3a", "s3n", "wasb", "wasbs", "adl", "abfs", "abfss"})


def scores_shards(job: ScoreJob, partition_by: list[str], default_fs: str = "file:///") -> bool:
    """Whether ``job`` runs as Kappa's shards on the executors (else on Spark's own readers and
    writers): Parquet input, no ``--partition-by``, no URL (nor, where Hadoop's ``fs.defaultFS``
    is not local, plain path) that only Hadoop's file systems read."""
    urls = [url for url in (job.input_file, job.output_file, job.errors_file) if url]
    local_default = urlsplit(default_fs).scheme.lower() in ("", "file", "local")
    hadoop = any(
        urlsplit(url).scheme.lower() in HADOOP_SCHEMES or (not local_default and "://" not in url)
        for url in urls
    )
    if hadoop or partition_by or not job.input_file:
        return False
    try:
        return input_kind(job.input_file, job.input_format) == "parquet"
    except InputError:
        return True  # the run says what is wrong with the input, as `kappa run` does


def default_fs(spark: Any) -> str:
    """Hadoop's default file system in ``spark``'s configuration (where plain paths point)."""
    return str(spark.sparkContext._jsc.hadoopConfiguration().get("fs.defaultFS") or "file:///")


class SparkPool:
    """Shards as one-task Spark jobs, run from as many driver threads as the cluster has task slots."""

    engine = "spark"

    def __init__(self, spark: Any, state: WorkerState, job: ScoreJob, env_check: str) -> None:
        from kappa_batch.spark import ship

        self.spark = spark
        self._cpus = int(spark.conf.get("spark.task.cpus", "1"))
        self.width = self._slots()
        self.threads = configured(job.threads_per_worker) or self._cpus
        digest = state.runner.manifest.digest if state.runner.manifest else None
        handle = ship(spark, job.bundle, digest)  # the version the run resolved at its start
        # threads None: each task's spark.task.cpus
        self.plan = ShardPlan.of(state, job, handle, env_check, configured(job.threads_per_worker))
        self._jobs: ThreadPoolExecutor | None = None

    def _slots(self) -> int:
        """Tasks the cluster runs at once: its registered cores (Spark's default parallelism, at
        least 2) over ``spark.task.cpus``; capped, as each job in flight holds a driver thread."""
        return max(1, min(MAX_SLOTS, int(self.spark.sparkContext.defaultParallelism) // self._cpus))

    def submit(self, task: Task) -> Future[tuple[int, int, int]]:
        if self._jobs is None:
            self._jobs = ThreadPoolExecutor(2 * self.width, thread_name_prefix="kappa-spark-job")
        return self._jobs.submit(self._one, task)

    def _one(self, task: Task) -> tuple[int, int, int]:
        index = task.index if isinstance(task, PlannedShard) else task[0]
        rdd = self.spark.sparkContext.parallelize([task], 1)
        try:
            counts: tuple[int, int, int] = rdd.map(partial(remote_work, self.plan)).collect()[0]
        except Exception as exc:  # noqa: BLE001 - py4j's error carries the Java and Python stacks
            raise KappaError(
                f"the Spark task scoring shard {index} failed: {failure(exc)}; the shards finished are "
                "kept: run the same command with --resume to score the rest"
            ) from None
        return counts

    def warm(self) -> None:
        """Load the bundle in a Python worker per task slot before the first shard (a job of one task
        per slot: a bundle the executors cannot load fails the run here, with one line)."""
        slots = self.spark.sparkContext.parallelize(range(self.width), self.width)
        try:
            slots.foreach(partial(_warm_slot, self.plan))
        except Exception as exc:  # noqa: BLE001 - as in _one
            raise KappaError(f"the Spark executors are not ready to score: {failure(exc)}") from None
        self.width = self._slots()  # executors that joined meanwhile count now
        log.info(
            "scoring on Spark %s: %d task slots, BLAS/OpenMP threads per task %d",
            self.spark.sparkContext.master,
            self.width,
            self.threads,
        )

    def close(self) -> None:
        """Stop what is still queued or running (a run that failed): the shards are atomic, so a
        cancelled one is simply not there for --resume."""
        if self._jobs is not None:
            self._jobs.shutdown(wait=False, cancel_futures=True)
            self.spark.sparkContext.cancelAllJobs()
            self._jobs.shutdown(wait=True)


def _warm_slot(plan: ShardPlan, _: int) -> None:
    warm(plan)


_PYTHON_ERROR = re.compile(r"^(?:[A-Za-z_][\w.]*\.)?([A-Z]\w*(?:Error|Exception|Mismatch|Exit)): (.+)$")


def failure(exc: BaseException) -> str:
    """The one line that says why a Spark job failed: the Python error its worker raised (the last
    ``Type: message`` line of the worker's traceback inside py4j's text), else Spark's reason."""
    text = str(exc)
    found = [m for line in text.splitlines() if (m := _PYTHON_ERROR.match(line.strip()))]
    python = [m for m in found if not m.group(0).startswith(("org.", "java.", "py4j."))]
    if python:
        kind, message = python[-1].group(1), python[-1].group(2)
        return f"{kind}: {message}"
    reason = re.search(r"Job aborted due to stage failure: (.+)", text)
    return (
        reason.group(1) if reason else text.strip().splitlines()[0] if text.strip() else type(exc).__name__
    )[:500]


def run_on_spark(spark: Any, job: ScoreJob, env_check: str = "fail") -> Report:
    """``kappa run --engine spark [--master URL]`` with ``spark``'s session, for Parquet input (see
    :func:`scores_shards`); the caller stops the session."""
    return run(with_absolute_paths(job), lambda state, job_: SparkPool(spark, state, job_, env_check))
