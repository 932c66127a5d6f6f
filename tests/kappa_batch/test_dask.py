"""Dask: DataFrame scoring and ``kappa run --engine dask`` on a real distributed cluster.

The cluster is a ``dask scheduler`` and two single-threaded ``dask worker`` processes
(with nannies) started on 127.0.0.1 in their own folder.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

pytestmark = pytest.mark.dask
KAPPA = str(Path(sys.executable).parent / "kappa")
FEATURES = ["sepal_length", "sepal_width", "petal_length", "petal_width"]

SERVICE = """
import time

import kappa
from kappa.adapters import DataframeInput, DefaultOutput
from kappa.frameworks.sklearn import SklearnModelArtifact

@kappa.artifacts([SklearnModelArtifact("model")])
class DaskIris(kappa.BentoService):
    @kappa.api(input=DataframeInput(), batch=True)
    def predict(self, df):
        if (df.iloc[:, 0] < 0).any():
            raise ValueError("negative sepal length")
        return self.artifacts.model.predict(df.to_numpy())

    @kappa.api(input=DataframeInput(), output=DefaultOutput(dtype="int64"), batch=True)
    def typed(self, df):
        return self.artifacts.model.predict(df.to_numpy())

    @kappa.api(input=DataframeInput(), batch=True)
    def slow(self, df):
        time.sleep(0.25)
        return self.artifacts.model.predict(df.to_numpy())
"""


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    from tests.servers import dask_cluster

    with dask_cluster(tmp_path_factory.mktemp("dask")) as address:
        yield address


@pytest.fixture
def client(cluster):
    from distributed import Client

    with Client(cluster, timeout="30s") as client_:
        yield client_


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    from sklearn.datasets import load_iris
    from sklearn.ensemble import RandomForestClassifier

    root = tmp_path_factory.mktemp("dask_svc")
    (root / "dask_iris_service.py").write_text(SERVICE)
    sys.path.insert(0, str(root))
    try:
        import dask_iris_service
    finally:
        sys.path.remove(str(root))
    X, y = load_iris(return_X_y=True)
    model = RandomForestClassifier(n_estimators=200, random_state=0).fit(X, y)  # a few MB when pickled
    svc = dask_iris_service.DaskIris().pack("model", model)
    path = svc.save_to_dir(str(tmp_path_factory.mktemp("bundle") / "iris"))
    sys.modules.pop("dask_iris_service", None)
    return path


@pytest.fixture(scope="module")
def iris_big():
    from sklearn.datasets import load_iris

    data = load_iris(as_frame=True).frame.iloc[:, :4]
    data.columns = FEATURES
    big = pd.concat([data] * 20, ignore_index=True)
    big.insert(0, "id", [f"row{i}" for i in range(len(big))])
    big.loc[7, "sepal_length"] = -1.0
    return big


def _parquet(frame: pd.DataFrame, folder: Path, row_group_size: int = 500) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "iris.parquet"
    frame.to_parquet(path, row_group_size=row_group_size, index=False)
    return path


def _run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([KAPPA, "run", *args], capture_output=True, text=True, cwd=cwd)


def _read_output(folder: Path) -> pd.DataFrame:
    files = sorted(p for p in folder.glob("part-*.parquet"))
    return pd.concat([pq.read_table(f).to_pandas() for f in files], ignore_index=True)


def _local_reference(bundle: str, source: Path, target: Path, api: str = "predict") -> pd.DataFrame:
    result = _run(bundle, api, "--input-file", str(source), "--output-file", str(target), "--id-column", "id")
    assert result.returncode == 0, result.stderr
    return _read_output(target).sort_values("id").reset_index(drop=True)


def test_score_dataframe_on_a_cluster_matches_kappa_run(client, bundle, iris_big, tmp_path):
    import dask.dataframe as dd

    from kappa_batch import dask as kdask

    source = _parquet(iris_big, tmp_path / "in")
    expected = _local_reference(bundle, source, tmp_path / "local")
    ddf = dd.from_pandas(iris_big, npartitions=6)
    scored = kdask.score(ddf, bundle, "predict", id_column="id")
    assert list(scored.columns) == ["id", "prediction", "_status", "_message"]
    assert scored.npartitions == 6
    result = scored.compute()
    assert result.index.equals(iris_big.index)  # same index: joins back onto the input
    ok = result[result["_status"].isna()].sort_values("id").reset_index(drop=True)
    assert ok["id"].tolist() == expected["id"].tolist()
    assert ok["prediction"].astype(int).tolist() == expected["prediction"].tolist()
    failed = result[result["_status"].notna()]
    assert failed["id"].tolist() == ["row7"] and "negative sepal length" in failed["_message"].iloc[0]
    # the model is loaded once per worker process, from the copy shipped into its local directory
    from kappa_batch.cache import loaded_from

    locations = client.run(loaded_from)
    assert len(locations) == 2
    for worker_dir, where in zip(
        client.run(lambda dask_worker: dask_worker.local_directory).values(), locations.values(), strict=True
    ):
        assert len(where) <= 1
        assert all(str(path).startswith(worker_dir) for path in where.values())
    assert any(locations.values())


def test_failed_rows_can_fail_the_task(client, bundle, iris_big):
    import dask.dataframe as dd

    from kappa.errors import InputError
    from kappa_batch import dask as kdask

    ddf = dd.from_pandas(iris_big, npartitions=3)
    with pytest.raises(Exception, match="negative sepal length"):
        kdask.score(ddf, bundle, "predict", id_column="id", errors="raise").compute()
    clean = kdask.score(ddf.loc[10:], bundle, "predict", id_column="id", errors="raise")
    assert list(clean.columns) == ["id", "prediction"]
    assert len(clean.compute()) == len(iris_big) - 10
    with pytest.raises(InputError, match="id_column\\) 'nope' is not in the input"):
        kdask.score(ddf, bundle, "predict", id_column="nope")
    with pytest.raises(InputError, match="errors must be"):
        kdask.score(ddf, bundle, "predict", errors="skip")


def test_meta_comes_from_the_declared_output_without_computing(client, bundle, iris_big, tmp_path):
    import dask.dataframe as dd

    from kappa_batch import dask as kdask

    marks = tmp_path / "computed"
    marks.mkdir()

    def load(part: int) -> pd.DataFrame:
        (marks / str(part)).touch()
        return iris_big.iloc[10 + part * 100 : 10 + (part + 1) * 100, 1:].reset_index(drop=True)

    ddf = dd.from_map(load, range(4), meta=iris_big.iloc[:0, 1:].reset_index(drop=True))
    scored = kdask.score(ddf, bundle, "typed")
    assert list(os.listdir(marks)) == []  # building the graph scored nothing, not even fake rows
    assert str(scored.dtypes["prediction"]) == "int64[pyarrow]"
    assert len(scored.compute()) == 400 and len(os.listdir(marks)) == 4
    # an undeclared output is learned from real rows of the first partition, or given as meta
    given = kdask.score(ddf, bundle, "predict", meta={"prediction": "int32"})
    assert str(given.dtypes["prediction"]) == "int32[pyarrow]"
    assert given.compute()["prediction"].notna().all()


def test_graph_holds_no_model_for_200_partitions(client, bundle, iris_big):
    import pickle

    import dask.dataframe as dd

    from kappa_batch import dask as kdask

    model_bytes = sum(p.stat().st_size for p in (Path(bundle) / "artifacts").rglob("*") if p.is_file())
    assert model_bytes > 300_000
    ddf = dd.from_pandas(pd.concat([iris_big] * 4, ignore_index=True), npartitions=200)
    scored = kdask.score(ddf, bundle, "predict", id_column="id")
    graph = dict(scored.__dask_graph__())
    scoring = {k: v for k, v in graph.items() if "score_partition" in str(k)}
    assert len(scoring) == 200
    sizes = [len(pickle.dumps(task)) for task in scoring.values()]
    # each task carries a handle, the API name and the schema (about 2 KB), never the model
    assert max(sizes) * 100 < model_bytes
    assert all(b"RandomForest" not in pickle.dumps(task) for task in scoring.values())
    assert len(scored.compute()) == len(iris_big) * 4


def test_kappa_run_engine_dask_matches_the_local_engine(cluster, bundle, iris_big, tmp_path):
    source = _parquet(iris_big, tmp_path / "in", row_group_size=300)
    expected = _local_reference(bundle, source, tmp_path / "local")
    report_file = tmp_path / "report.json"
    result = _run(
        bundle,
        "predict",
        "--input-file",
        "in/iris.parquet",  # relative to the driver; the workers run elsewhere
        "--output-file",
        "out",
        "--id-column",
        "id",
        "--batch-size",
        "300",
        "--engine",
        "dask",
        "--scheduler",
        cluster,
        "--report",
        str(report_file),
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    got = _read_output(tmp_path / "out").sort_values("id").reset_index(drop=True)
    pd.testing.assert_frame_equal(got, expected)
    report = json.loads(report_file.read_text())
    assert report["engine"] == "dask" and report["workers"] == 2
    assert (report["rows_in"], report["rows_out"], report["rows_error"]) == (3000, 2999, 1)
    assert report["shards"] == 10
    assert (tmp_path / "out" / "_SUCCESS").exists()
    errors = pq.read_table(tmp_path / "out" / "_errors.parquet").to_pylist()
    assert [e["id"] for e in errors] == ["row7"]
    # CSV input is streamed by the driver and scored by the workers
    iris_big.to_csv(tmp_path / "in.csv", index=False)
    csv = _run(
        bundle,
        "predict",
        "--input-file",
        str(tmp_path / "in.csv"),
        "--output-file",
        str(tmp_path / "csv-out"),
        "--id-column",
        "id",
        "--batch-size",
        "500",
        "--engine",
        "dask",
        "--scheduler",
        cluster,
    )
    assert csv.returncode == 0, csv.stderr
    got_csv = _read_output(tmp_path / "csv-out").sort_values("id").reset_index(drop=True)
    pd.testing.assert_frame_equal(got_csv, expected)


def test_dask_run_resumes_an_interrupted_output(cluster, bundle, iris_big, tmp_path):
    frame = iris_big.iloc[10:].reset_index(drop=True)
    source = _parquet(frame, tmp_path / "in", row_group_size=145)  # 20 shards
    out = tmp_path / "out"
    args = [
        KAPPA,
        "run",
        bundle,
        "slow",
        "--input-file",
        str(source),
        "--output-file",
        str(out),
        "--id-column",
        "id",
        "--batch-size",
        "145",
        "--engine",
        "dask",
        "--scheduler",
        cluster,
    ]
    job = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while len(list(out.glob("part-*.parquet"))) < 3:
        assert job.poll() is None and time.monotonic() < deadline
        time.sleep(0.05)
    job.kill()
    job.wait()
    written = len(list(out.glob("part-*.parquet")))
    assert written < 20 and not (out / "_SUCCESS").exists()
    resumed = subprocess.run([*args, "--resume", "-o", "json"], capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    report = json.loads(resumed.stdout)
    assert report["shards_resumed"] >= 3 and report["rows_in"] == len(frame)
    got = _read_output(out)
    assert got["id"].is_unique and sorted(got["id"]) == sorted(frame["id"])


def test_bad_scheduler_address_is_a_clear_error(bundle, iris_big, tmp_path):
    from tests.servers import free_port

    source = _parquet(iris_big, tmp_path / "in")
    result = _run(
        bundle,
        "predict",
        "--input-file",
        str(source),
        "--output-file",
        str(tmp_path / "out"),
        "--engine",
        "dask",
        "--scheduler",
        f"tcp://127.0.0.1:{free_port()}",
    )
    assert result.returncode != 0
    assert "cannot reach the Dask scheduler" in result.stderr and "Traceback" not in result.stderr
    flags = _run(
        bundle,
        "predict",
        "--input-file",
        str(source),
        "--output-file",
        str(tmp_path / "o2"),
        "--scheduler",
        "tcp://127.0.0.1:1",
    )
    assert flags.returncode == 2 and "--scheduler needs --engine dask" in flags.stderr


# Loads slowly on a Dask worker only, and answers whether that worker runs Dask's profiler.
SLOW_LOAD = """
import time

import kappa
from kappa.adapters import DataframeInput, DefaultOutput


def dask_worker():
    try:
        from distributed import get_worker

        return get_worker()
    except (ImportError, ValueError):
        return None


if dask_worker() is not None:
    time.sleep(4)


class SlowLoad(kappa.BentoService):
    @kappa.api(
        input=DataframeInput(columns=["x"], dtype="float64"), output=DefaultOutput(dtype="int64"), batch=True
    )
    def profiled(self, df):
        return [int("profile" in dask_worker().periodic_callbacks)] * len(df)
"""


def test_kappa_run_starts_its_own_cluster_and_loads_the_bundle_before_its_clock(make_module, tmp_path):
    bundle = make_module(SLOW_LOAD).SlowLoad().save_to_dir(str(tmp_path / "bundle"))
    source = tmp_path / "in.parquet"
    pd.DataFrame({"x": [float(i) for i in range(4000)]}).to_parquet(source, row_group_size=1000)
    report_file = tmp_path / "report.json"
    result = _run(
        bundle, "profiled", "--input-file", str(source), "--output-file", str(tmp_path / "out"),
        "--batch-size", "1000", "--engine", "dask", "--workers", "2", "--report", str(report_file),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    report = json.loads(report_file.read_text())
    assert (report["engine"], report["workers"], report["rows_in"], report["shards"]) == ("dask", 2, 4000, 4)
    assert report["seconds"] < 4, "the workers' 4 s loads were counted as scoring"
    profiled = set(_read_output(tmp_path / "out")["prediction"])
    assert profiled == {0}, "a worker of Kappa's own cluster ran Dask's profiler"


def test_arrow_output_types_survive_a_failed_row():
    from kappa_batch.dask import _empty_frame

    schema = pa.schema([("prediction", pa.int64()), ("_status", pa.int32())])
    frame = _empty_frame(schema, pd.RangeIndex(0))
    assert [str(t) for t in frame.dtypes] == ["int64[pyarrow]", "int32[pyarrow]"]
    assert np.issubdtype(frame.index.dtype, np.integer)


@pytest.mark.server
def test_dask_resolves_and_records_through_the_registry(
    cluster, client, bundle, iris_big, use_gamma, tmp_path
):
    import dask.dataframe as dd
    from click.testing import CliRunner

    from kappa.cli.main import cli
    from kappa_batch import dask as kdask

    imported = CliRunner().invoke(cli, ["import", bundle, "-o", "json"])
    assert imported.exit_code == 0, imported.output
    tag = "DaskIris:" + json.loads(imported.stdout)["version"]
    source = _parquet(iris_big, tmp_path / "in")
    expected = _local_reference(bundle, source, tmp_path / "local")
    scored = kdask.score(
        dd.from_pandas(iris_big, npartitions=3), "DaskIris:latest", "predict", "id"
    ).compute()
    ok = scored[scored["_status"].isna()].sort_values("id")
    assert ok["prediction"].astype(int).tolist() == expected["prediction"].tolist()
    args = ["run", "DaskIris:latest", "predict", "--input-file", str(source), "--id-column", "id",
            "--output-file", str(tmp_path / "out"), "--engine", "dask", "--scheduler", cluster]  # fmt: skip
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    got = _read_output(tmp_path / "out").sort_values("id").reset_index(drop=True)
    assert got["prediction"].tolist() == expected["prediction"].tolist()
    runs = json.loads(CliRunner().invoke(cli, ["runs", "list", "DaskIris", "-o", "json"]).stdout)
    assert [(r["bundle"], r["rows_in"]) for r in runs if r["engine"] == "dask"] == [(tag, 3000)]


def test_dask_workers_keep_to_their_share_of_the_host(client, probe_bundle):
    """Two single-threaded workers on this host: each gets the cores // 2 (at least 1), or
    threads_per_worker."""
    import dask.dataframe as dd

    from kappa import threads
    from kappa_batch import dask as kdask
    from kappa_batch.workers import dask_shares

    share = max(1, threads.available_cores() // 2)
    assert set(dask_shares(client).values()) == {share} and len(dask_shares(client)) == 2
    ddf = dd.from_pandas(pd.DataFrame({"x": [float(i) for i in range(400)]}), npartitions=4)
    seen = set(kdask.score(ddf, probe_bundle, "threads").compute().iloc[:, 0].astype(int))
    assert seen == {share}
    seen = set(
        kdask.score(ddf, probe_bundle, "threads", threads_per_worker=3).compute().iloc[:, 0].astype(int)
    )
    assert seen == {3}
