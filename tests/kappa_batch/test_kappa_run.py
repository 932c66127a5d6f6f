"""`kappa run` end to end: inputs, outputs, ids, errors, reports, resume, workers."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
import traceback
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

KAPPA = str(Path(sys.executable).parent / "kappa")

SERVICE = """
import os, time
import kappa
from kappa.adapters import DataframeInput, FileInput, ImageInput

FEATURES = ["a", "b"]

class Scorer(kappa.BentoService):
    @kappa.api(input=DataframeInput(columns=FEATURES, dtype="float64"), batch=True)
    def score(self, df):
        delay = float(os.environ.get("SCORER_DELAY", "0"))
        if delay:
            time.sleep(delay)
        if (df["a"] < 0).any():
            raise ValueError("negative a")
        return (df["a"] * 10 + df["b"]).tolist()

    @kappa.api(input=FileInput(), batch=True)
    def size(self, files):
        return [len(f.read()) for f in files]

    @kappa.api(input=ImageInput(), batch=True)
    def shape(self, images):
        return [list(i.shape) for i in images]
"""


@pytest.fixture
def bundle(make_module, tmp_path_factory):
    return make_module(SERVICE).Scorer().save_to_dir(str(tmp_path_factory.mktemp("b") / "scorer"))


def kappa(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None):
    """`kappa ARGS` in this process (CliRunner): these tests are about what the command does. The
    tests about the process itself (its exit, signals, forked workers' lives) start real ones."""
    from kappa.cli.main import cli

    previous = os.getcwd()
    if cwd is not None:
        os.chdir(cwd)
    try:
        result = CliRunner().invoke(cli, list(args), env=env)
    finally:
        os.chdir(previous)
    stderr = result.stderr
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        stderr += "Traceback (in process):\n" + "".join(traceback.format_exception(result.exception))
    return subprocess.CompletedProcess(args, result.exit_code, result.stdout, stderr)


def kappa_process(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """A real `kappa ARGS` process (its log lines, its environment, its exit)."""
    return subprocess.run([KAPPA, *args], capture_output=True, text=True, env={**os.environ, **(env or {})})


def frame(n: int, bad: tuple[int, ...] = ()) -> pd.DataFrame:
    a = np.arange(n, dtype="float64")
    a[list(bad)] = -1.0
    return pd.DataFrame({"id": [f"r{i}" for i in range(n)], "a": a, "b": np.ones(n)})


def read_output(path: Path) -> pd.DataFrame:
    files = sorted(path.glob("part-*.parquet")) if path.is_dir() else [path]
    return pd.concat([pq.read_table(f).to_pandas() for f in files], ignore_index=True)


def test_inline_input_prints_json(bundle):
    out = kappa("run", bundle, "score", "--input", "[[1.0, 2.0], [-1.0, 0.0]]")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == [12.0, None]  # one output column: its values, as documented
    assert json.loads(out.stderr.strip().splitlines()[-1]) == {
        "row": 1,
        "status": 500,
        "error": "ValueError: negative a",
    }


def test_csv_to_parquet_with_ids_errors_and_report(bundle, tmp_path):
    frame(1000, bad=(7, 500)).to_csv(tmp_path / "in.csv", index=False)
    out = kappa(
        "run",
        bundle,
        "score",
        "--input-file",
        str(tmp_path / "in.csv"),
        "--output-file",
        str(tmp_path / "out/"),
        "--id-column",
        "id",
        "--batch-size",
        "128",
        "--errors-file",
        str(tmp_path / "errors.parquet"),
        "--report",
        str(tmp_path / "report.json"),
    )
    assert out.returncode == 0, out.stderr
    result = read_output(tmp_path / "out")
    assert len(result) == 998 and list(result.columns) == ["id", "prediction"]
    assert result.set_index("id").loc["r3", "prediction"] == 31.0
    assert len(list((tmp_path / "out").glob("part-*.parquet"))) == 8  # ceil(1000 / 128) shards
    errors = pq.read_table(tmp_path / "errors.parquet").to_pylist()
    assert [(e["id"], e["_status"]) for e in errors] == [("r7", 500), ("r500", 500)]
    assert errors[0]["_message"] == "ValueError: negative a"
    report = json.loads((tmp_path / "report.json").read_text())
    assert (report["rows_in"], report["rows_out"], report["rows_error"]) == (1000, 998, 2)
    assert report["bundle"].startswith("Scorer:") and report["digest"].startswith("sha256:")
    assert report["api"] == "score" and report["rows_per_second"] > 0 and report["shards"] == 8
    assert (tmp_path / "out" / "_SUCCESS").exists()


@pytest.mark.parametrize("fmt", ["parquet", "csv", "jsonl", "json"])
def test_input_and_output_formats(bundle, tmp_path, fmt):
    data = frame(50)
    source = tmp_path / f"in.{fmt}"
    if fmt == "parquet":
        data.to_parquet(source)
    elif fmt == "csv":
        data.to_csv(source, index=False)
    elif fmt == "jsonl":
        data.to_json(source, orient="records", lines=True)
    else:
        data.to_json(source, orient="records")
    out_fmt = {"parquet": "csv", "csv": "jsonl", "jsonl": "parquet", "json": "csv"}[fmt]
    target = tmp_path / f"out.{out_fmt}"
    result = kappa(
        "run", bundle, "score", "--input-file", str(source), "--output-file", str(target), "--id-column", "id"
    )
    assert result.returncode == 0, result.stderr
    if out_fmt == "csv":
        scored = pd.read_csv(target)
    elif out_fmt == "jsonl":
        scored = pd.read_json(target, lines=True)
    else:
        scored = pd.read_parquet(target)
    assert list(scored["id"]) == list(data["id"])
    assert list(scored["prediction"]) == list(data["a"] * 10 + 1)


def test_folder_and_glob_inputs_keep_row_positions(bundle, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    for i in range(3):
        frame(10).iloc[:, 1:].to_parquet(folder / f"part-{i}.parquet")
    (folder / "_ignored.parquet").write_bytes(b"not parquet")
    for spec in (str(folder), str(folder / "part-*.parquet"), f"file://{folder}"):
        target = tmp_path / f"out-{abs(hash(spec))}"
        result = kappa("run", bundle, "score", "--input-file", spec, "--output-file", str(target))
        assert result.returncode == 0, result.stderr
        scored = read_output(target)
        assert list(scored["_row"]) == list(range(30))


def test_existing_output_needs_overwrite_or_resume(bundle, tmp_path):
    frame(10).to_parquet(tmp_path / "in.parquet")
    args = [
        "run",
        bundle,
        "score",
        "--input-file",
        str(tmp_path / "in.parquet"),
        "--output-file",
        str(tmp_path / "out"),
    ]
    assert kappa(*args).returncode == 0
    again = kappa(*args)
    assert again.returncode == 1 and "already exists; pass --overwrite" in again.stderr
    replaced = kappa(*args, "--overwrite")
    assert replaced.returncode == 0, replaced.stderr
    done = kappa_process(*args, "--resume")  # its log line, as a terminal shows it
    assert done.returncode == 0 and "nothing to resume" in done.stderr
    other = kappa(*args, "--resume", "--batch-size", "3")
    assert other.returncode == 1 and "started with other settings (batch_size: 65536 -> 3)" in other.stderr


def test_max_error_rate_fails_the_run(bundle, tmp_path):
    frame(100, bad=(1, 2, 3)).to_parquet(tmp_path / "in.parquet")
    args = ["run", bundle, "score", "--input-file", str(tmp_path / "in.parquet")]
    ok = kappa(*args, "--output-file", str(tmp_path / "a"), "--max-error-rate", "0.05")
    assert ok.returncode == 0, ok.stderr
    failed = kappa(*args, "--output-file", str(tmp_path / "b"), "--max-error-rate", "0.01")
    assert failed.returncode == 1 and "3 of 100 rows failed (3.00%)" in failed.stderr
    assert not (tmp_path / "b" / "_SUCCESS").exists()
    assert len(pq.read_table(tmp_path / "b" / "_errors.parquet")) == 3  # nothing written is lost


def test_workers_give_the_same_output(bundle, tmp_path):
    frame(5000, bad=(42,)).to_parquet(tmp_path / "in.parquet", row_group_size=300)
    outputs = []
    for workers in ("1", "2"):
        target = tmp_path / f"out{workers}"
        result = kappa(
            "run",
            bundle,
            "score",
            "--input-file",
            str(tmp_path / "in.parquet"),
            "--output-file",
            str(target),
            "--batch-size",
            "300",
            "--workers",
            workers,
            "--id-column",
            "id",
        )
        assert result.returncode == 0, result.stderr
        outputs.append(read_output(target).sort_values("id").reset_index(drop=True))
    pd.testing.assert_frame_equal(outputs[0], outputs[1])
    assert len(outputs[0]) == 4999


@pytest.mark.slow
def test_a_run_killed_with_sigkill_resumes_to_exactly_once(bundle, tmp_path):
    n, batch = 30000, 500
    frame(n, bad=(10, 12345, 29999)).to_parquet(tmp_path / "in.parquet", row_group_size=batch)
    target = tmp_path / "out"
    args = [
        KAPPA,
        "run",
        bundle,
        "score",
        "--input-file",
        str(tmp_path / "in.parquet"),
        "--output-file",
        str(target),
        "--batch-size",
        str(batch),
        "--id-column",
        "id",
    ]
    env = {**os.environ, "SCORER_DELAY": "0.03"}
    for kill_after in (5, 25):  # two crashes at different points, each followed by --resume
        proc = subprocess.Popen(
            [*args, *(["--resume"] if kill_after != 5 else [])],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 60
        while len(list(target.glob("part-*.parquet"))) < kill_after and time.monotonic() < deadline:
            time.sleep(0.01)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        assert not (target / "_SUCCESS").exists()
    finish = subprocess.run(
        [*args, "--resume", "--report", str(tmp_path / "r.json")], env=env, capture_output=True, text=True
    )
    assert finish.returncode == 0, finish.stderr
    scored = read_output(target)
    errors = pq.read_table(target / "_errors.parquet").to_pandas()
    ids = list(scored["id"]) + list(errors["id"])
    assert len(ids) == n and len(set(ids)) == n  # every row exactly once
    assert sorted(errors["id"]) == ["r10", "r12345", "r29999"]
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["rows_in"] == n and report["shards_resumed"] >= 25
    assert not list(target.rglob(".tmp-*"))


def test_files_and_images_from_a_folder(bundle, tmp_path):
    from PIL import Image

    folder = tmp_path / "files"
    (folder / "sub").mkdir(parents=True)
    (folder / "a.txt").write_bytes(b"12345")
    (folder / "sub" / "b.txt").write_bytes(b"1")
    sizes = kappa("run", bundle, "size", "--input-file", str(folder), "--output-file", str(tmp_path / "o1"))
    assert sizes.returncode == 0, sizes.stderr
    assert read_output(tmp_path / "o1").to_dict("list") == {
        "path": ["a.txt", "sub/b.txt"],
        "prediction": [5, 1],
    }
    images = tmp_path / "images"
    images.mkdir()
    Image.new("RGB", (4, 3)).save(images / "x.png")
    (images / "broken.png").write_bytes(b"no image")
    shapes = kappa("run", bundle, "shape", "--input-file", str(images), "--output-file", str(tmp_path / "o2"))
    assert shapes.returncode == 0, shapes.stderr
    assert pq.read_table(tmp_path / "o2" / "part-00000.parquet").to_pylist() == [
        {"path": "x.png", "prediction": [3, 4, 3]}
    ]
    errors = pq.read_table(tmp_path / "o2" / "_errors.parquet").to_pylist()
    assert errors[0]["path"] == "broken.png" and "cannot decode image" in errors[0]["_message"]


def test_clear_errors(bundle, tmp_path):
    frame(5).to_csv(tmp_path / "in.csv", index=False)
    pd.DataFrame({"a": ["x", "y"], "b": [1, 2]}).to_csv(tmp_path / "strings.csv", index=False)
    cases = [
        (["run", "Nope:latest", "score", "--input", "[[1, 2]]"], "bundle Nope:latest not found"),
        (["run", str(tmp_path / "missing"), "score", "--input", "[[1, 2]]"], "no bundle at"),
        (["run", bundle, "nope", "--input", "[[1, 2]]"], "Scorer has no API 'nope'"),
        (
            ["run", bundle, "score", "--input-file", str(tmp_path / "none.csv"), "--output-file", "x"],
            "no such file or folder",
        ),
        (["run", bundle, "score", "--input", "[[1, 2"], "--input is not valid JSON"),
        (
            [
                "run",
                bundle,
                "score",
                "--input-file",
                str(tmp_path / "in.csv"),
                "--output-file",
                str(tmp_path / "o"),
                "--id-column",
                "nope",
            ],
            "(--id-column / id_column) 'nope' is not in the input",
        ),
    ]
    for args, message in cases:
        result = kappa(*args)
        assert result.returncode != 0, args
        assert message in result.stderr, (message, result.stderr)
        assert "Traceback" not in result.stderr
    # rows whose 'a' cannot be read as the declared float64 fail alone, into the errors file; every
    # row failing is past the default run.max_error_rate: the run says so in one line, no _SUCCESS
    strings = kappa(
        "run",
        bundle,
        "score",
        "--input-file",
        str(tmp_path / "strings.csv"),
        "--output-file",
        str(tmp_path / "o2"),
    )
    assert strings.returncode == 1
    assert strings.stderr.strip().splitlines()[-1].startswith("Error: 2 of 2 rows failed (100.00%)")
    assert not (tmp_path / "o2" / "_SUCCESS").exists()
    unreadable = pq.read_table(tmp_path / "o2" / "_errors.parquet").to_pylist()
    assert [e["_message"] for e in unreadable] == [
        "column 'a': cannot read 'x' as double",
        "column 'a': cannot read 'y' as double",
    ]
    pd.DataFrame({"a": [1.0]}).to_csv(tmp_path / "one.csv", index=False)
    missing = kappa(
        "run",
        bundle,
        "score",
        "--input-file",
        str(tmp_path / "one.csv"),
        "--output-file",
        str(tmp_path / "o3"),
    )
    assert "missing column(s) ['b']" in missing.stderr


def test_progress_bar_on_request(bundle, tmp_path):
    frame(100).to_parquet(tmp_path / "in.parquet")
    result = kappa(
        "run",
        bundle,
        "score",
        "--input-file",
        str(tmp_path / "in.parquet"),
        "--output-file",
        str(tmp_path / "o"),
        "--progress",
    )
    assert result.returncode == 0 and "100/100" in result.stderr and "rows" in result.stderr


@pytest.mark.s3
def test_s3_input_glob_and_output(bundle, tmp_path, s3_endpoint):
    import fsspec

    from tests.servers import S3_ENV

    env = {**S3_ENV, "FSSPEC_S3_ENDPOINT_URL": s3_endpoint}
    fs = fsspec.filesystem(
        "s3",
        endpoint_url=s3_endpoint,
        key=S3_ENV["AWS_ACCESS_KEY_ID"],
        secret=S3_ENV["AWS_SECRET_ACCESS_KEY"],
    )
    prefix = f"kappa-test/run-{os.getpid()}-{time.monotonic_ns()}"
    for i in range(2):
        buffer = io.BytesIO()
        frame(20).iloc[i * 10 : (i + 1) * 10].to_parquet(buffer, row_group_size=5)
        fs.pipe_file(f"{prefix}/in/part-{i}.parquet", buffer.getvalue())
    result = kappa_process(
        "run",
        bundle,
        "score",
        "--input-file",
        f"s3://{prefix}/in/*.parquet",
        "--output-file",
        f"s3://{prefix}/out/",
        "--id-column",
        "id",
        "--batch-size",
        "7",
        env=env,
    )
    assert result.returncode == 0, result.stderr
    fs.invalidate_cache()
    parts = sorted(fs.glob(f"{prefix}/out/part-*.parquet"))
    assert len(parts) == 2  # row groups of 5 gathered to >= 7 rows, never across files
    scored = pa.concat_tables([pq.read_table(io.BytesIO(fs.cat_file(p))) for p in parts]).to_pandas()
    assert list(scored["id"]) == [f"r{i}" for i in range(20)]
    assert fs.exists(f"{prefix}/out/_SUCCESS") and not fs.glob(f"{prefix}/out/.tmp-*")


@pytest.mark.slow
def test_runs_with_many_shards_exit_cleanly(bundle, tmp_path):
    """Regression: `kappa run` sometimes aborted after its work ("terminate called without an
    active exception", exit -6) when an Arrow reader thread released Python-owned buffers while
    the interpreter exited. Many error shards to join, and several runs at once on two cores,
    are what made it show; every run must exit 0 with nothing on stderr but its own lines."""
    source = tmp_path / "in.parquet"
    pq.write_table(pa.Table.from_pandas(frame(120, bad=(3,)), preserve_index=False), source, row_group_size=2)
    args = ["--input-file", str(source), "--id-column", "id", "--batch-size", "2", "--no-progress"]
    for round_ in range(3):
        runs = [
            subprocess.Popen(
                [KAPPA, "run", bundle, "score", *args, "--output-file", str(tmp_path / f"out-{round_}-{i}")],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for i in range(4)
        ]
        for run in runs:
            _, err = run.communicate(timeout=300)
            assert run.returncode == 0 and "terminate called" not in err, err[-2000:]
    assert len(read_output(tmp_path / "out-2-3")) == 119
