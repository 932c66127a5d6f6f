"""`kappa pack-env`: one archive holds what executors need, proven on a Spark standalone cluster whose
worker Python has none of Kappa, pandas or scikit-learn, and on Dask workers running from it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tarfile
import time
import urllib.request
import venv
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from kappa.cli.main import cli

ROOT = Path(__file__).resolve().parents[3]


def invoke(*args: str):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def test_bad_requests_are_refused_before_anything_is_built(iris_service, tmp_path):
    bundle = Path(iris_service.save_to_dir(str(tmp_path / "b")))
    for args, says in (
        (["-o", str(tmp_path / "env.rar")], "name the archive"),
        (["-o", str(tmp_path / "env.tar.gz"), "--extras", "gpu"], "unknown extra"),
        (["-o", str(tmp_path / "missing" / "env.tar.gz")], "is not a folder"),
    ):
        result = invoke("pack-env", str(bundle), *args)
        assert result.exit_code == 2 and says in result.stderr, result.output
    existing = tmp_path / "env.tar.gz"
    existing.write_bytes(b"keep me")
    result = invoke("pack-env", str(bundle), "-o", str(existing))
    assert result.exit_code == 2 and "--overwrite" in result.stderr
    assert existing.read_bytes() == b"keep me"  # nothing already written is lost
    (bundle / "src").chmod(0o755)
    source = next((bundle / "src").rglob("*.py"))
    source.chmod(0o644)
    source.write_text(source.read_text() + "\n# changed\n")
    result = invoke("pack-env", str(bundle), "-o", str(tmp_path / "new.tar.gz"))
    assert result.exit_code == 2 and "modified after it was saved" in result.stderr
    assert not (tmp_path / "new.tar.gz").exists()


@pytest.fixture(scope="module")
def packed(tmp_path_factory):
    """The iris example bundle, its archive (with Kappa's dask extra) and data to score."""
    base = tmp_path_factory.mktemp("pack-env")
    env = {**os.environ, "KAPPA_HOME": str(base / "home")}
    saved = subprocess.run(
        [sys.executable, "-m", "examples.iris.main"], env=env, cwd=ROOT, capture_output=True, text=True
    )
    assert saved.returncode == 0, saved.stderr
    bundle = subprocess.run(
        [sys.executable, "-m", "kappa", "get", "IrisClassifier:latest", "-o", "json"],
        env=env, capture_output=True, text=True, check=True,
    )  # fmt: skip
    path = json.loads(bundle.stdout)["uri"].removeprefix("file://")
    archive = base / "env.tar.gz"
    built = subprocess.run(
        [sys.executable, "-m", "kappa", "pack-env", path, "-o", str(archive), "--extras", "dask",
         "--compress-level", "1"],
        env={**env, "PIP_NO_COMPILE": "1"},  # here the executors may compile what they import
        capture_output=True, text=True,
    )  # fmt: skip
    assert built.returncode == 0, built.stderr[-3000:]
    assert built.stdout.strip() == str(archive)
    source = base / "iris.parquet"
    frame = pd.read_csv(ROOT / "examples" / "iris" / "iris.csv").drop(columns=["species"])
    pd.concat([frame] * 20, ignore_index=True).to_parquet(source, index=False)
    expected = base / "expected.parquet"
    local = subprocess.run(
        [sys.executable, "-m", "kappa", "run", path, "predict", "--input-file", str(source),
         "--output-file", str(expected)],
        env=env, capture_output=True, text=True,
    )  # fmt: skip
    assert local.returncode == 0, local.stderr
    return {"bundle": path, "archive": archive, "source": source, "expected": expected, "base": base}


def _bare_python(folder: Path) -> str:
    venv.EnvBuilder(with_pip=False).create(folder)
    python = str(folder / "bin" / "python")
    probe = subprocess.run([python, "-c", "import pandas"], capture_output=True)
    assert probe.returncode != 0  # nothing but the standard library
    return python


def _scores(folder: Path) -> pd.DataFrame:
    table = pq.read_table(folder).to_pandas()
    return table.sort_values("_row").reset_index(drop=True)[["_row", "prediction"]]


@pytest.mark.spark
@pytest.mark.slow
def test_spark_workers_with_a_bare_python_score_with_the_packed_env(packed, spark_cluster, tmp_path):
    from tests.servers import spark_home

    bare = _bare_python(tmp_path / "bare")
    env = {
        **os.environ,
        "PYSPARK_PYTHON": bare,  # the cluster's executors: no Kappa, no pandas, no model packages
        "PYSPARK_DRIVER_PYTHON": sys.executable,
        "SPARK_LOCAL_IP": "127.0.0.1",
        "SPARK_HOME": str(spark_home()),
    }
    output = tmp_path / "scored"

    def submit(out: Path, *conf: str) -> subprocess.CompletedProcess[str]:
        command = [
            str(spark_home() / "bin" / "spark-submit"), "--master", spark_cluster,
            "--conf", "spark.executor.memory=1g", "--conf", f"spark.pyspark.driver.python={sys.executable}",
            *conf, str(ROOT / "spark_jobs" / "score.py"), "--bundle", packed["bundle"], "--api", "predict",
            "--input", str(packed["source"]), "--output", str(out),
        ]  # fmt: skip
        return subprocess.run(command, capture_output=True, text=True, env=env, cwd=tmp_path)

    # without these the executors would run `bare`, which cannot even import pandas
    packed_env = ["--archives", f"{packed['archive']}#env", "--conf", "spark.pyspark.python=./env/bin/python"]
    result = submit(output, *packed_env)
    assert result.returncode == 0, result.stderr[-4000:]
    pd.testing.assert_frame_equal(_scores(output), _scores(packed["expected"]), check_dtype=False)


@pytest.fixture(scope="module")
def unpacked(packed):
    """The archive unpacked, as YARN or a container entrypoint does; its Python has Kappa and the model."""
    folder = packed["base"] / "unpacked"
    folder.mkdir()
    with tarfile.open(packed["archive"]) as archive:
        archive.extractall(folder, filter="tar")
    python = str(folder / "bin" / "python")
    code = "import kappa, sklearn; print(kappa.__file__)"
    # run elsewhere than the checkout: `python -c` would import ./kappa first
    where = subprocess.run([python, "-c", code], capture_output=True, text=True, env=_clean_env(), cwd=folder)
    assert where.returncode == 0 and where.stdout.startswith(str(folder)), where.stderr
    return folder


def _clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    return {**env, **extra}


@pytest.mark.dask
@pytest.mark.slow
def test_dask_workers_running_from_the_packed_env_score(packed, unpacked, tmp_path):
    from tests.servers import dask_cluster

    output = tmp_path / "scored"
    with dask_cluster(tmp_path / "cluster", workers=2, python=str(unpacked / "bin" / "python")) as scheduler:
        result = subprocess.run(
            [sys.executable, "-m", "kappa", "run", packed["bundle"], "predict",
             "--input-file", str(packed["source"]), "--output-file", str(output),
             "--engine", "dask", "--scheduler", scheduler],
            capture_output=True, text=True, env={**os.environ, "KAPPA_HOME": str(packed["base"] / "home")},
        )  # fmt: skip
        assert result.returncode == 0, result.stderr[-4000:]
    pd.testing.assert_frame_equal(_scores(output), _scores(packed["expected"]), check_dtype=False)


@pytest.mark.slow
def test_the_image_command_serves_from_the_installed_env_and_stops_on_sigterm(packed, unpacked, tmp_path):
    """pack-env's environment is `pip install <bundle>[dask]` in a fresh virtualenv, as the image installs
    it: the image's default command, `kappa serve` of the bundle, answers /livez and a prediction
    there and drains on SIGTERM, and the bundle's console script scores a file."""
    command = (Path(packed["bundle"]) / "Dockerfile").read_text().rstrip().splitlines()[-1]
    assert command == 'CMD ["kappa", "serve", "/bundle", "--host", "0.0.0.0", "--port", "5000"]'
    from tests.servers import free_port

    port = free_port()
    # as `source env/bin/activate`: venv-pack points the scripts at `python` on PATH
    env = _clean_env(KAPPA_HOME=str(tmp_path / "home"), PATH=f"{unpacked / 'bin'}:{os.environ['PATH']}")
    server = subprocess.Popen(
        [str(unpacked / "bin" / "python"), "-m", "kappa", "serve", packed["bundle"],
         "--host", "127.0.0.1", "--port", str(port)],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=tmp_path,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/livez", timeout=2) as reply:
                    assert reply.status == 200
                    break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"kappa serve did not come up: {server.communicate()[0]}")
                time.sleep(0.5)
        body = json.dumps([[5.1, 3.5, 1.4, 0.2]]).encode()
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/predict", data=body, headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=30) as reply:
            assert json.loads(reply.read()) == [0]
        server.send_signal(signal.SIGTERM)
        assert server.wait(timeout=90) in (0, -signal.SIGTERM)  # uvicorn re-raises the signal it drained on
    finally:
        if server.poll() is None:
            server.kill()
    data = tmp_path / "two.csv"
    data.write_text("sepal_length,sepal_width,petal_length,petal_width\n5.1,3.5,1.4,0.2\n6.7,3.0,5.2,2.3\n")
    script = subprocess.run(
        [str(unpacked / "bin" / "IrisClassifier"), "run", "predict", "--input-file", str(data)],
        env=env, capture_output=True, text=True, cwd=tmp_path,
    )  # fmt: skip
    assert script.returncode == 0 and json.loads(script.stdout) == [0, 2], script.stderr[-2000:]
