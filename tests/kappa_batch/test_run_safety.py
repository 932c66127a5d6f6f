"""``kappa run`` never mixes, loses or silently skips data, and fails with one clear line."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from kappa.cli.main import cli

SERVICE = """
import os, time
import kappa
from kappa.adapters import DataframeInput

class Adder(kappa.BentoService):
    @kappa.api(input=DataframeInput(columns=["a", "b"], dtype="float64"), batch=True)
    def score(self, df):
        time.sleep(float(os.environ.get("ADDER_DELAY", "0")))
        return (df["a"] * 10 + df["b"]).tolist()

    @kappa.api(input=DataframeInput(), batch=True)
    def loose(self, df):
        return (df["a"] * 10 + df["b"]).tolist()
"""


@pytest.fixture
def bundle(make_module, tmp_path_factory) -> str:
    return make_module(SERVICE).Adder().save_to_dir(str(tmp_path_factory.mktemp("b") / "adder"))


def run(*args: str) -> object:
    return CliRunner().invoke(cli, ["run", *args], catch_exceptions=False)


def test_resume_refuses_an_input_that_changed(bundle, tmp_path):
    source = tmp_path / "in.csv"
    pd.DataFrame({"a": np.arange(300.0), "b": 1.0}).to_csv(source, index=False)
    out = tmp_path / "out"
    assert run(bundle, "score", "--input-file", str(source), "--output-file", f"{out}/",
               "--batch-size", "100").exit_code == 0  # fmt: skip
    (out / "_kappa" / "manifest.json").unlink()  # as if the run had been killed before its commit
    (out / "part-00002.parquet").unlink()
    pd.DataFrame({"a": np.arange(500.0), "b": 2.0}).to_csv(source, index=False)
    os.utime(source, (time.time() + 5, time.time() + 5))
    result = run(bundle, "score", "--input-file", str(source), "--output-file", f"{out}/",
                 "--batch-size", "100", "--resume")  # fmt: skip
    assert result.exit_code == 1
    assert "the input changed since the run started" in result.output and "in.csv" in result.output
    assert "Traceback" not in result.output


def test_a_late_type_change_in_a_csv_fails_those_rows_only(bundle, tmp_path):
    rows = 120_000  # several MB: the bad values come long after the block Arrow infers types from
    a = [str(i) for i in range(rows)]
    a[100_000], a[110_000] = "1.5", "abc"
    source = tmp_path / "late.csv"
    pd.DataFrame({"id": np.arange(rows), "a": a, "b": np.ones(rows, dtype=np.int64)}).to_csv(
        source, index=False
    )
    for api, unreadable in (("score", ["abc"]), ("loose", ["abc"])):  # declared float64 / widened to float
        out = tmp_path / api
        result = run(
            bundle, api, "--input-file", str(source), "--output-file", f"{out}/", "--id-column", "id"
        )
        assert result.exit_code == 0, result.output
        output = pq.read_table(out)
        errors = pq.read_table(out / "_errors.parquet")
        assert output.num_rows + errors.num_rows == rows
        assert errors.column("id").to_pylist() == [110_000]
        assert [m.split("'")[3] for m in errors.column("_message").to_pylist()] == unreadable
        assert errors.schema.field("id").type == output.schema.field("id").type == pa.int64()
        scored = dict(
            zip(output.column("id").to_pylist(), output.column("prediction").to_pylist(), strict=True)
        )
        assert scored[100_000] == 16.0 and scored[5] == 51.0


def test_a_folder_of_mixed_formats_needs_a_choice(bundle, tmp_path):
    folder = tmp_path / "mixed"
    folder.mkdir()
    frame = pd.DataFrame({"a": np.arange(200.0), "b": 1.0})
    frame.to_csv(folder / "one.csv", index=False)
    frame.to_parquet(folder / "two.parquet")
    result = run(bundle, "score", "--input-file", str(folder), "--output-file", str(tmp_path / "o1.parquet"))
    assert result.exit_code == 1
    assert "mixes file formats (1 csv, 1 parquet); pass --input-format" in result.output
    assert not (tmp_path / "o1.parquet").exists()
    for fmt in ("csv", "parquet"):
        out = tmp_path / f"o-{fmt}.parquet"
        result = run(
            bundle, "score", "--input-file", str(folder), "--input-format", fmt, "--output-file", str(out)
        )
        assert result.exit_code == 0, result.output
        assert pq.read_table(out).num_rows == 200


@pytest.mark.slow
def test_workers_exit_when_their_parent_is_killed(bundle, tmp_path):
    source = tmp_path / "in.parquet"
    pd.DataFrame({"a": np.arange(4000.0), "b": 1.0}).to_parquet(source, row_group_size=100)
    kappa = str(Path(sys.executable).parent / "kappa")
    parent = subprocess.Popen(
        [kappa, "run", bundle, "score", "--input-file", str(source), "--output-file", str(tmp_path / "o/"),
         "--batch-size", "100", "--workers", "2", "--no-progress"],
        env={**os.environ, "ADDER_DELAY": "0.5"}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip

    def children() -> list[int]:
        found = subprocess.run(["pgrep", "-P", str(parent.pid)], capture_output=True, text=True).stdout
        return [int(p) for p in found.split()]

    deadline = time.monotonic() + 60
    while len(children()) < 2:
        assert parent.poll() is None and time.monotonic() < deadline, "the workers never started"
        time.sleep(0.2)
    workers = children()
    parent.send_signal(signal.SIGKILL)
    parent.wait()
    deadline = time.monotonic() + 15
    alive = workers
    while alive and time.monotonic() < deadline:
        time.sleep(0.2)
        alive = [w for w in workers if Path(f"/proc/{w}").exists() and "zombie" not in _state(w)]
    assert not alive, f"workers {alive} outlived their parent"


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/status").read_text().split("State:", 1)[1].split("\n", 1)[0].lower()
    except (OSError, IndexError):
        return "zombie"


def test_resume_and_overwrite_clean_leftovers_of_a_killed_assembly(tmp_path):
    from kappa_batch.shards import OutputSpec, ShardedOutput

    target = tmp_path / "preds.csv"
    spec = OutputSpec.parse(str(target), None, None)
    params = {"api": "score", "input": "x", "input_files": []}
    output = ShardedOutput(spec)
    output.prepare(params, resume=False, overwrite=False)
    table = pa.table({"_row": [0, 1], "prediction": [1.0, 2.0]})
    output.write_shard(0, table, pa.table({"_row": pa.array([], pa.int64())}))
    leftovers = [tmp_path / ".tmp-0badc0de-preds.csv", tmp_path / ".tmp-0badc0de-preds.errors.parquet"]
    for leftover in leftovers:  # what a kill in the middle of the join leaves beside the output
        leftover.write_text("half")
    assert ShardedOutput(spec).prepare(params, resume=True, overwrite=False) == {0}
    assert not any(p.exists() for p in leftovers)
    for leftover in leftovers:
        leftover.write_text("half")
    ShardedOutput(spec).prepare(params, resume=False, overwrite=True)
    assert not any(p.exists() for p in leftovers)


def test_unreadable_and_unwritable_files_are_one_clear_line(bundle, tmp_path):
    good = tmp_path / "good.csv"
    good.write_text("a,b\n1,2\n")
    latin = tmp_path / "latin.csv"
    latin.write_bytes("a\xe9,b\n1,2\n".encode("latin-1"))
    blocked = tmp_path / "blocked"
    blocked.write_text("a file where a folder should be")
    o1, o2, out = str(tmp_path / "o1/"), str(tmp_path / "o2/"), str(blocked / "out.parquet")
    cases = [
        (["--input-file", str(latin), "--output-file", o1], "header row is not UTF-8 text"),
        (["--input-file", str(good), "--output-file", out], "cannot write --output-file"),
        (["--input-file", str(good), "--output-file", o2, "--errors-file", str(blocked / "e.parquet")],
         "cannot write --errors-file"),
    ]  # fmt: skip
    for args, says in cases:
        result = run(bundle, "score", *args)
        assert result.exit_code == 1, result.output
        assert says in result.output and "Traceback" not in result.output
        assert len(result.output.strip().splitlines()) <= 2  # the "scoring with" line, then the error
    assert not (tmp_path / "o2").exists()  # nothing left behind that blocks a corrected re-run


def test_an_empty_row_group_keeps_the_id_type(bundle, tmp_path):
    source = tmp_path / "ids.parquet"
    schema = pa.schema([("id", pa.string()), ("a", pa.float64()), ("b", pa.float64())])
    with pq.ParquetWriter(source, schema) as writer:
        writer.write_table(pa.table({"id": ["x", "y"], "a": [1.0, 2.0], "b": [1.0, 1.0]}, schema=schema))
        writer.write_table(schema.empty_table())
    out = tmp_path / "o"
    assert run(bundle, "score", "--input-file", str(source), "--output-file", f"{out}/", "--id-column", "id",
               "--batch-size", "1").exit_code == 0  # fmt: skip
    assert pq.read_table(out / "_errors.parquet").schema.field("id").type == pa.string()
    assert pq.read_table(out).schema.field("id").type == pa.string()


def test_csv_columns_empty_at_first_and_bad_ids_keep_their_types(bundle, tmp_path):
    rows = 120_000
    ids = [str(i) for i in range(rows)]
    ids[115_000] = "oops"
    source = tmp_path / "sparse.csv"
    pd.DataFrame({"id": ids, "a": np.arange(rows, dtype=float), "b": [""] * 100_000 + ["2"] * 20_000}).to_csv(
        source, index=False
    )
    out = tmp_path / "o"
    result = run(
        bundle, "loose", "--input-file", str(source), "--output-file", f"{out}/", "--id-column", "id"
    )
    assert result.exit_code == 0, result.output
    output, errors = pq.read_table(out), pq.read_table(out / "_errors.parquet")
    assert output.schema.field("id").type == errors.schema.field("id").type == pa.int64()
    assert errors.column("_message").to_pylist() == ["column 'id': cannot read 'oops' as int64"]
    assert output.num_rows + errors.num_rows == rows
    late = output.filter(pa.compute.greater_equal(output.column("id"), 100_000))
    assert set(late.column("prediction").to_pylist()) == {v * 10 + 2 for v in late.column("id").to_pylist()}


def test_resuming_a_run_that_recorded_no_input_files_is_refused_clearly(tmp_path):
    import json

    from kappa.errors import InputError
    from kappa_batch.shards import OutputSpec, ShardedOutput

    spec = OutputSpec.parse(str(tmp_path / "out/"), None, None)
    (tmp_path / "out" / "_kappa").mkdir(parents=True)
    (tmp_path / "out" / "_kappa" / "run.json").write_text(json.dumps({"api": "score"}))
    with pytest.raises(InputError, match="older Kappa that did not record its input files"):
        ShardedOutput(spec).prepare({"api": "score", "input_files": []}, resume=True, overwrite=False)


def test_a_run_where_every_row_fails_exits_non_zero_unless_told_otherwise(bundle, tmp_path, monkeypatch):
    source = tmp_path / "in.csv"
    source.write_text("a,b\nx,1\ny,2\n")
    failed = run(bundle, "score", "--input-file", str(source), "--output-file", str(tmp_path / "o1/"))
    assert failed.exit_code == 1
    assert "2 of 2 rows failed (100.00%), more than --max-error-rate 50.00%" in failed.output
    assert not (tmp_path / "o1" / "_SUCCESS").exists()
    tolerated = run(bundle, "score", "--input-file", str(source), "--output-file", str(tmp_path / "o2/"),
                    "--max-error-rate", "1")  # fmt: skip
    assert tolerated.exit_code == 0 and (tmp_path / "o2" / "_SUCCESS").exists()
    monkeypatch.setenv("KAPPA_RUN_MAX_ERROR_RATE", "1")  # the default comes from configuration
    assert (
        run(bundle, "score", "--input-file", str(source), "--output-file", str(tmp_path / "o3/")).exit_code
        == 0
    )


def test_a_single_file_output_leaves_no_parts_folder(bundle, tmp_path):
    source = tmp_path / "in.csv"
    source.write_text("a,b\n1,1\n2,2\n")
    out = tmp_path / "preds.csv"
    assert run(bundle, "score", "--input-file", str(source), "--output-file", str(out)).exit_code == 0
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == [".preds.csv.kappa.json", "in.csv", "preds.csv", "preds.errors.parquet"]
    again = run(bundle, "score", "--input-file", str(source), "--output-file", str(out), "--resume")
    assert again.exit_code == 0 and "2 rows in" in again.output  # complete: nothing to resume
    assert (
        run(bundle, "score", "--input-file", str(source), "--output-file", str(out), "--overwrite").exit_code
        == 0
    )
