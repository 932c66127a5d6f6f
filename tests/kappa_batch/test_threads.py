"""Each scoring process keeps to its share of the cores (issue 22): BLAS/OpenMP pools of
``kappa run`` workers, ``--workers auto``, ``--threads-per-worker`` and the setting."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from kappa import threads

CORES = threads.available_cores()


def pools() -> dict[str, int]:
    from threadpoolctl import threadpool_info

    return {pool["filepath"]: pool["num_threads"] for pool in threadpool_info()}


def score(probe_bundle: str, source: Path, target: Path, *flags: str) -> tuple[dict, set[int]]:
    from kappa.cli.main import cli

    report = target.parent / f"{target.name}.json"
    result = CliRunner().invoke(
        cli,
        ["run", probe_bundle, "threads", "--input-file", str(source), "--output-file", str(target)]
        + ["--batch-size", "1000", "--report", str(report), *flags],
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    scored = pd.concat([pq.read_table(f).to_pandas() for f in sorted(target.glob("part-*.parquet"))])
    values = {int(v) for v in scored.drop(columns=["_row"]).iloc[:, 0]}
    return json.loads(report.read_text()), values


@pytest.fixture
def four_shards(tmp_path: Path) -> Path:
    path = tmp_path / "in.parquet"
    pd.DataFrame({"x": [float(i) for i in range(4000)]}).to_parquet(path, row_group_size=1000)
    return path


def test_share_divides_the_cores_evenly_unless_told() -> None:
    assert threads.share(1, cores=2) == 2
    assert threads.share(2, cores=2) == 1
    assert threads.share(3, cores=2) == 1  # never below one
    assert threads.share(4, cores=16) == 4
    assert threads.share(2, threads=3, cores=2) == 3


def test_limited_holds_every_pool_and_then_gives_the_process_its_own_back(monkeypatch) -> None:
    import pyarrow as pa

    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    before, arrow = pools(), pa.cpu_count()
    with threads.limited(1):
        assert set(pools().values()) == {1} and pa.cpu_count() == 1
        assert os.environ["OMP_NUM_THREADS"] == os.environ["OPENBLAS_NUM_THREADS"] == "1"
        assert threads.current() == 1
    assert pools() == before and pa.cpu_count() == arrow
    assert "OMP_NUM_THREADS" not in os.environ


@pytest.mark.parametrize(
    ("flags", "workers", "expected"),
    [
        (("--workers", "2"), 2, max(1, CORES // 2)),
        (("--workers", "1"), 1, CORES),
        (("--workers", "1", "--threads-per-worker", "1"), 1, 1),
    ],
)
def test_every_scoring_process_holds_its_share(probe_bundle, four_shards, tmp_path, flags, workers, expected):
    from threadpoolctl import threadpool_limits

    before = pools()
    with threadpool_limits(limits=3):  # neither share: the run must set its own, then give these back
        report, seen = score(probe_bundle, four_shards, tmp_path / "out", *flags)
        assert set(pools().values()) == {3}
    assert report["workers"] == workers and report["threads_per_worker"] == expected
    assert seen == {expected}, "a scoring process's widest pool is not its share"
    assert pools() == before, "the run left the calling process's pools changed"


def test_the_setting_and_its_environment_variable_set_the_default(
    probe_bundle, four_shards, tmp_path, monkeypatch
):
    monkeypatch.setenv("KAPPA_RUN_THREADS_PER_WORKER", "1")
    report, seen = score(probe_bundle, four_shards, tmp_path / "out", "--workers", "1")
    assert report["threads_per_worker"] == 1 and seen == {1}
    monkeypatch.setenv("KAPPA_RUN_THREADS_PER_WORKER", "none")
    from kappa.cli.main import cli

    result = CliRunner().invoke(cli, ["run", probe_bundle, "threads", "--input-file", str(four_shards)])
    assert result.exit_code != 0
    assert (
        "run.threads_per_worker must be a whole number above 0, not 'none' (from environment)"
        in result.output
    )


def test_workers_auto_is_the_default_and_follows_the_cores_and_the_shards(
    probe_bundle, four_shards, tmp_path
):
    report, _ = score(probe_bundle, four_shards, tmp_path / "out")
    assert report["workers"] == min(CORES, 4) and report["threads_per_worker"] == max(
        1, CORES // min(CORES, 4)
    )
    one = tmp_path / "one.parquet"
    pd.DataFrame({"x": [1.0, 2.0]}).to_parquet(one)
    report, seen = score(probe_bundle, one, tmp_path / "out-one", "--workers", "auto")
    assert report["workers"] == 1 and report["engine"] == "local" and seen == {CORES}
    small_csv = tmp_path / "small.csv"  # a stream of unknown length: a pool only for a large one
    small_csv.write_text("x\n" + "\n".join(str(i) for i in range(3000)) + "\n")
    report, seen = score(probe_bundle, small_csv, tmp_path / "out-csv")
    assert report["workers"] == 1 and report["rows_in"] == 3000 and seen == {CORES}


def test_thread_counts_below_one_are_refused() -> None:
    from kappa.errors import InputError

    for bad in (0, -1):
        with pytest.raises(InputError, match="threads per worker must be a whole number of at least 1"):
            threads.configured(bad)


@pytest.mark.parametrize("value", ["0", "-1", "two"])
def test_bad_worker_counts_say_what_is_accepted(probe_bundle, four_shards, value):
    from kappa.cli.main import cli

    result = CliRunner().invoke(
        cli, ["run", probe_bundle, "threads", "--input-file", str(four_shards), "--workers", value]
    )
    assert result.exit_code == 2
    assert f"{value!r} is neither a whole number of at least 1 nor 'auto'" in result.output
