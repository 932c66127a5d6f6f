"""A full disk under `kappa run`'s output (issue 21): one clear line, nothing corrupt, and
`--resume` completes once there is space. The disk is a small tmpfs the test mounts, so it
needs root (and a kernel that lets it mount); elsewhere it is skipped and says why."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

SERVICE = """
import kappa
from kappa.adapters import DataframeInput

class Doubler(kappa.BentoService):
    @kappa.api(input=DataframeInput(columns=["a"], dtype="float64"), batch=True)
    def score(self, df):
        if (df["a"] < 0).any():
            raise ValueError("negative a")
        return (df["a"] * 2).tolist()
"""


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


def test_a_full_disk_is_one_line_keeps_whole_shards_and_resume_completes(make_module, small_disk, tmp_path):
    from kappa.cli.main import cli

    disk, grow = small_disk
    n, bad = 200_000, [3, 150_001]
    a = np.arange(n, dtype="float64")
    a[bad] = -1.0
    source = tmp_path / "in.parquet"
    pd.DataFrame({"id": [f"row-{i:08d}" for i in range(n)], "a": a}).to_parquet(source, row_group_size=10_000)
    bundle = make_module(SERVICE).Doubler().save_to_dir(str(tmp_path / "bundle"))
    target = disk / "out"
    args = ["run", bundle, "score", "--input-file", str(source), "--output-file", str(target)]
    args += ["--id-column", "id", "--workers", "1"]

    full = CliRunner().invoke(cli, args)
    assert full.exit_code == 1
    assert f"the run into {target} stopped: No space left on device" in full.output
    assert "--resume" in full.output and "Traceback" not in full.output
    assert not (target / "_SUCCESS").exists()
    parts = sorted(target.glob("part-*.parquet"))
    assert 0 < len(parts) < n // 10_000  # it got some way, not all the way
    for part in parts:  # nothing half-written under a shard's own name
        assert pq.read_metadata(part).num_rows > 0

    grow()
    resumed = CliRunner().invoke(cli, [*args, "--resume", "--report", str(tmp_path / "r.json")])
    assert resumed.exit_code == 0, resumed.output
    scored = pd.concat([pq.read_table(f).to_pandas() for f in sorted(target.glob("part-*.parquet"))])
    errors = pq.read_table(target / "_errors.parquet").to_pandas()
    ids = list(scored["id"]) + list(errors["id"])
    assert len(ids) == n and len(set(ids)) == n  # every input row exactly once
    assert sorted(errors["id"]) == sorted(f"row-{i:08d}" for i in bad)
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["status"] == "succeeded" and report["shards_resumed"] == len(parts)
    assert not list(target.rglob(".tmp-*"))
