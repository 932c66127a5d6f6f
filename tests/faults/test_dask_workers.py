"""Faults on `kappa run --engine dask` (issue 21): one worker process of a real two-worker cluster
killed with SIGKILL mid-job; Dask runs its lost tasks again on the other worker (or on the one its
nanny restarts), and the job completes with every input row exactly once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.faults.checks import doubler, doubler_input, exactly_once

KAPPA = str(Path(sys.executable).parent / "kappa")
pytestmark = pytest.mark.dask


@pytest.mark.slow
def test_a_killed_dask_worker_loses_and_duplicates_no_rows(make_module, tmp_path):
    from distributed import Client

    from tests.servers import dask_cluster

    n, batch, bad = 12_000, 300, [7, 5_999, 11_999]
    bad_ids = doubler_input(tmp_path / "in.parquet", n, bad, batch)
    bundle = make_module(doubler(0.25)).Doubler().save_to_dir(str(tmp_path / "bundle"))
    target, report_file = tmp_path / "out", tmp_path / "r.json"
    with dask_cluster(tmp_path / "dask") as address, Client(address, timeout="30s") as client:
        client.wait_for_workers(2, timeout=60)
        args = [KAPPA, "run", bundle, "score", "--input-file", str(tmp_path / "in.parquet")]
        args += ["--output-file", str(target), "--batch-size", str(batch), "--id-column", "id"]
        args += ["--engine", "dask", "--scheduler", address, "--report", str(report_file)]
        run = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 120
        while len(list(target.glob("part-*.parquet"))) < 4:
            assert run.poll() is None, run.communicate()
            assert time.monotonic() < deadline, "the job never wrote four shards"
            time.sleep(0.05)
        busy: list[str] = []
        while not busy:  # a worker that holds a shard now (between two shards, none may)
            assert run.poll() is None, run.communicate()
            assert time.monotonic() < deadline, "no worker was seen scoring"
            busy = [address for address, keys in client.processing().items() if keys]
            time.sleep(0.02)
        victim = client.run(os.getpid, workers=busy[:1])[busy[0]]  # one that holds a shard now
        os.kill(victim, signal.SIGKILL)
        _, stderr = run.communicate(timeout=180)
        assert run.returncode == 0, stderr[-3000:]
        assert not run.poll() and len(list(target.glob("part-*.parquet"))) == n // batch
        scored, report = exactly_once(target, n, bad_ids, report_file)
        assert (scored["prediction"] == scored["id"].str[1:].astype(float) * 2).all()
        assert (report["engine"], report["rows_out"], report["rows_error"]) == ("dask", n - 3, 3)
        client.wait_for_workers(2, timeout=60)  # the nanny restarted the killed worker
        assert victim not in client.run(os.getpid).values()
