"""A full disk under `kappa run`'s output (issue 21): one clear line, nothing corrupt, and
`--resume` completes once there is space. The disk is a small tmpfs the test mounts, so it
needs root (and a kernel that lets it mount); elsewhere it is skipped and says why."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from tests.faults.checks import doubler, exactly_once

KAPPA = str(Path(sys.executable).parent / "kappa")


@pytest.fixture
def small_disk(tmp_path: Path):
    """A 1 MiB tmpfs at tmp_path/disk; yields a function that grows it to 64 MiB."""
    if os.geteuid() != 0:
        pytest.skip(
            "the disk-full test mounts a tmpfs, which needs root; run the suite as root to include it"
        )
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(disk)], capture_output=True
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (a container without CAP_SYS_ADMIN?): {mounted.stderr!r}")

    def grow() -> None:
        subprocess.run(["mount", "-o", "remount,size=64m", str(disk)], check=True)

    try:
        yield disk, grow
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)


@pytest.mark.slow  # a tmpfs mount and three `kappa run` processes
def test_a_full_disk_is_one_line_keeps_whole_shards_and_resume_completes(make_module, small_disk, tmp_path):
    disk, grow = small_disk
    n, bad = 200_000, [3, 150_001]
    a = np.arange(n, dtype="float64")
    a[bad] = -1.0
    source = tmp_path / "in.parquet"
    pd.DataFrame({"id": [f"row-{i:08d}" for i in range(n)], "a": a}).to_parquet(source, row_group_size=10_000)
    bundle = make_module(doubler()).Doubler().save_to_dir(str(tmp_path / "bundle"))
    target = disk / "out"
    args = [KAPPA, "run", bundle, "score", "--input-file", str(source), "--output-file", str(target)]
    args += ["--id-column", "id", "--workers", "1"]

    full = subprocess.run(args, capture_output=True, text=True)  # a process: its exit and its last line
    assert full.returncode == 1
    assert f"the run into {target} stopped: No space left on device" in full.stderr
    assert "--resume" in full.stderr and "Traceback" not in full.stderr
    assert not (target / "_SUCCESS").exists()
    parts = sorted(target.glob("part-*.parquet"))
    assert 0 < len(parts) < n // 10_000  # it got some way, not all the way
    for part in parts:  # nothing half-written under a shard's own name
        assert pq.read_metadata(part).num_rows > 0

    grow()
    resumed = subprocess.run(
        [*args, "--resume", "--report", str(tmp_path / "r.json")], capture_output=True, text=True
    )
    assert resumed.returncode == 0, resumed.stderr
    _, report = exactly_once(target, n, [f"row-{i:08d}" for i in bad], tmp_path / "r.json")
    assert report["shards_resumed"] == len(parts)
