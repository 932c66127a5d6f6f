"""Faults on `kappa run --workers 2` (issue 21): a pool process killed with SIGKILL mid-run ends
the run with one clear line, and `--resume` finishes it with every input row exactly once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from tests.faults.checks import doubler, doubler_input, exactly_once

KAPPA = str(Path(sys.executable).parent / "kappa")


@pytest.mark.slow
def test_a_killed_pool_process_fails_the_run_clearly_and_resume_completes(make_module, tmp_path):
    n, batch, bad = 20_000, 500, [7, 9_999, 19_999]
    bad_ids = doubler_input(tmp_path / "in.parquet", n, bad, batch)
    bundle = make_module(doubler(0.05)).Doubler().save_to_dir(str(tmp_path / "bundle"))
    target = tmp_path / "out"
    args = [KAPPA, "run", bundle, "score", "--input-file", str(tmp_path / "in.parquet")]
    args += ["--output-file", str(target), "--batch-size", str(batch), "--id-column", "id", "--workers", "2"]
    run = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while len(list(target.glob("part-*.parquet"))) < 4:
        assert run.poll() is None and time.monotonic() < deadline, "the run never wrote four shards"
        time.sleep(0.02)
    workers = psutil.Process(run.pid).children()
    assert len(workers) == 2
    os.kill(workers[0].pid, signal.SIGKILL)
    _, stderr = run.communicate(timeout=60)
    assert run.returncode == 1
    assert "a scoring worker process died (killed, or out of memory)" in stderr
    assert "--resume" in stderr and "Traceback" not in stderr
    assert not (target / "_SUCCESS").exists()
    done_before = len(list(target.glob("part-*.parquet")))
    assert done_before < n // batch

    finish = subprocess.run(
        [*args, "--resume", "--report", str(tmp_path / "r.json")], capture_output=True, text=True
    )
    assert finish.returncode == 0, finish.stderr
    scored, report = exactly_once(target, n, bad_ids, tmp_path / "r.json")
    assert (scored["prediction"] == scored["id"].str[1:].astype(float) * 2).all()
    assert report["shards_resumed"] >= done_before - 2  # what the dead run wrote (less the in-flight)
