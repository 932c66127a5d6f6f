"""Faults on a Spark standalone cluster of two workers (issue 21): mid-job, one worker's executor
is killed with SIGKILL, then a Python worker of the executor that is left; the job completes
through Spark's task retry, with every input row exactly once.

Both faults hit one job, one after the other, so that the suite starts one cluster and runs one
job for them."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import psutil
import pytest

from tests.faults.checks import doubler, exactly_once

pytestmark = [pytest.mark.spark, pytest.mark.slow]

KAPPA = str(Path(sys.executable).parent / "kappa")


@pytest.fixture
def two_workers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    from tests.servers import spark_standalone

    with spark_standalone(tmp_path_factory.mktemp("spark-two"), workers=2, cores=1) as master:
        yield master


def _processes(match: Callable[[psutil.Process], bool]) -> list[psutil.Process]:
    found = []
    for process in psutil.process_iter():
        try:
            if match(process):
                found.append(process)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            pass
    return found


EXECUTOR = "org.apache.spark.executor.CoarseGrainedExecutorBackend"


def _executors() -> list[psutil.Process]:
    return _processes(lambda p: EXECUTOR in " ".join(p.cmdline()))


def _python_workers(executor: psutil.Process) -> list[psutil.Process]:
    """The Python workers an executor's ``pyspark.daemon`` forked (the daemon itself is not one);
    none when the executor or its daemon is gone."""
    try:
        daemons = [c for c in executor.children() if "pyspark.daemon" in " ".join(c.cmdline())]
        return [worker for daemon in daemons for worker in daemon.children()]
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return []


def _wait(what: str, find: Callable[[], list[psutil.Process]], run: subprocess.Popen[str]) -> psutil.Process:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        assert run.poll() is None, f"the job ended before {what}: {run.communicate()[1][-3000:]}"
        found = find()
        if found:
            return found[0]
        time.sleep(0.1)
    raise AssertionError(f"no {what} within 120 s")


def test_a_killed_executor_and_a_killed_python_worker_are_retried_to_exactly_once(
    make_module, two_workers, tmp_path
):
    n, files, bad = 24_000, 24, [5, 17_777]
    a = np.arange(n, dtype="float64")
    a[bad] = -1.0
    frame = pd.DataFrame({"id": [f"r{i}" for i in range(n)], "a": a})
    source = tmp_path / "in"
    source.mkdir()
    step = n // files
    for i in range(files):  # one Spark task (and one 0.4 s batch) per file
        frame.iloc[i * step : (i + 1) * step].to_parquet(source / f"part-{i:03d}.parquet")
    bundle = make_module(doubler(0.4)).Doubler().save_to_dir(str(tmp_path / "bundle"))
    target = tmp_path / "out"
    args = [KAPPA, "run", bundle, "score", "--input-file", str(source), "--output-file", str(target)]
    args += ["--id-column", "id", "--engine", "spark", "--master", two_workers]
    args += ["--report", str(tmp_path / "r.json")]
    env = {**os.environ, "PYSPARK_PYTHON": sys.executable, "SPARK_LOCAL_IP": "127.0.0.1"}
    run = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    # 1. An executor's JVM, once it has Python workers scoring
    first = _wait("an executor scoring", lambda: [e for e in _executors() if _python_workers(e)], run)
    first.send_signal(signal.SIGKILL)
    # 2. A Python worker of another executor (the survivor, or the one launched in its place)
    others = lambda: [w for e in _executors() if e.pid != first.pid for w in _python_workers(e)]  # noqa: E731
    victim = _wait("a Python worker on another executor", others, run)
    os.kill(victim.pid, signal.SIGKILL)

    _, stderr = run.communicate(timeout=600)
    assert run.returncode == 0, stderr[-4000:]
    assert "Lost task" in stderr, stderr[-4000:]  # Spark's log: tasks failed, and were run again
    assert not psutil.pid_exists(first.pid) or first.status() == psutil.STATUS_ZOMBIE
    scored, report = exactly_once(target, n, [f"r{i}" for i in bad], tmp_path / "r.json")
    assert (scored["prediction"] == scored["id"].str[1:].astype(float) * 2).all()
    assert report["engine"] == "spark" and report["rows_error"] == len(bad)
