"""Spark over fsspec URLs without Hadoop jars (kappa_batch.spark_files): reading with `kappa run`'s
row ids, writing that replaces earlier runs, and spark_jobs/score.py between s3:// URLs on a
standalone cluster."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from kappa_batch import spark_files

pytestmark = pytest.mark.spark
ROOT = Path(__file__).resolve().parents[2]


def test_which_urls_go_through_fsspec():
    for url in ("s3://b/k", "gs://b/k", "az://c/k", "memory://x", "gcs://b/k"):
        assert spark_files.uses_fsspec(url), url
    for url in ("/data/in", "data/in", "file:///data", "hdfs://nn/x", "s3a://b/k", "wasbs://c@a/x"):
        assert not spark_files.uses_fsspec(url), url


def _frames(n: int) -> list[pd.DataFrame]:
    rng = np.random.default_rng(3)
    return [pd.DataFrame({"a": rng.normal(size=n + i * 7), "b": np.arange(n + i * 7) % 5}) for i in range(3)]


def test_reading_gives_every_row_the_id_kappa_run_gives_it(spark, tmp_path):
    parquet, csv = tmp_path / "pq", tmp_path / "csv"
    parquet.mkdir()
    csv.mkdir()
    frames = _frames(1000)
    for i, frame in enumerate(frames):  # names sort as kappa run reads them: 0, 1, 2
        pq.write_table(
            pa.Table.from_pandas(frame, preserve_index=False), parquet / f"f{i}.parquet", row_group_size=128
        )
        frame.to_csv(csv / f"f{i}.csv", index=False)
    expected = pd.concat(frames, ignore_index=True)
    expected["_row"] = np.arange(len(expected))
    for folder in (parquet, csv):
        df = spark_files.read(spark, f"file://{folder}", None, row_ids=True)
        assert df.rdd.getNumPartitions() >= 3
        got = df.toPandas().sort_values("_row").reset_index(drop=True)
        pd.testing.assert_frame_equal(got, expected, check_dtype=False)


def test_writing_replaces_earlier_runs_partition_by_partition(spark, tmp_path):
    out = f"file://{tmp_path / 'out'}"
    first = spark.createDataFrame(pd.DataFrame({"x": range(100), "part": [i % 3 for i in range(100)]}))
    spark_files.write(first.repartition(4), out, "parquet", ["part"])
    spark_files.write(first.filter("part = 1").selectExpr("x + 1000 AS x", "part"), out, "parquet", ["part"])
    got = {p.name: pq.read_table(p).to_pandas() for p in (tmp_path / "out").iterdir()}
    assert sorted(got) == ["part=0", "part=1", "part=2"]
    assert sorted(got["part=1"]["x"]) == [x + 1000 for x in range(100) if x % 3 == 1]  # replaced
    assert sorted(got["part=0"]["x"]) == [x for x in range(100) if x % 3 == 0]  # kept
    flat = f"file://{tmp_path / 'flat'}"
    spark_files.write(first.repartition(4), flat, "csv")
    spark_files.write(first.limit(10).coalesce(1), flat, "csv")
    files = list((tmp_path / "flat").iterdir())
    assert len(files) == 1 and len(pd.read_csv(files[0])) == 10  # only the last run's rows remain
    with pytest.raises(Exception, match="not supported"):
        spark_files.write(first, flat, "orc")


@pytest.mark.s3
@pytest.mark.slow
def test_spark_submit_scores_s3_input_into_s3_output_without_hadoop_jars(
    s3_endpoint, spark_cluster, tmp_path, monkeypatch
):
    import fsspec

    from tests.servers import S3_ENV, spark_home

    store = {**S3_ENV, "FSSPEC_S3_ENDPOINT_URL": s3_endpoint}
    for key, value in store.items():
        monkeypatch.setenv(key, value)  # the driver (and kappa run) read the object store like this
    monkeypatch.setitem(fsspec.config.conf, "s3", {"endpoint_url": s3_endpoint})
    saved = subprocess.run(
        [sys.executable, "-m", "examples.iris.main"], cwd=ROOT, capture_output=True, text=True,
        env={**os.environ, "KAPPA_HOME": str(tmp_path / "home")},
    )  # fmt: skip
    assert saved.returncode == 0, saved.stderr
    frame = pd.read_csv(ROOT / "examples" / "iris" / "iris.csv").drop(columns=["species"])
    frame.loc[7, "sepal_length"] = None  # one row the model cannot score: an error row
    fs = fsspec.filesystem("s3")
    prefix = f"kappa-test/spark-files-{os.getpid()}"
    for i in range(3):
        with fs.open(f"{prefix}/in/part-{i}.parquet", "wb") as handle:
            pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), handle, row_group_size=50)
    env = {
        **os.environ,
        "KAPPA_HOME": str(tmp_path / "home"),
        "PYSPARK_PYTHON": sys.executable,
        "PYSPARK_DRIVER_PYTHON": sys.executable,
        "SPARK_HOME": str(spark_home()),
    }
    local = subprocess.run(
        [sys.executable, "-m", "kappa", "run", "IrisClassifier:latest", "predict",
         "--input-file", f"s3://{prefix}/in/", "--output-file", str(tmp_path / "local.parquet")],
        env=env, capture_output=True, text=True,
    )  # fmt: skip
    assert local.returncode in (0, 1), local.stderr  # 1: a row failed (the run says so)
    expected = (
        pq.read_table(tmp_path / "local.parquet").to_pandas().sort_values("_row").reset_index(drop=True)
    )
    executor_env = [f"--conf=spark.executorEnv.{key}={value}" for key, value in store.items()]
    command = [
        str(spark_home() / "bin" / "spark-submit"), "--master", spark_cluster,
        "--conf", "spark.executor.memory=1g", *executor_env,  # as on any cluster
        str(ROOT / "spark_jobs" / "score.py"), "--bundle", "IrisClassifier:latest", "--api", "predict",
        "--input", f"s3://{prefix}/in/", "--output", f"s3://{prefix}/out/",
        "--report", str(tmp_path / "report.json"),
    ]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-4000:]
    fs.invalidate_cache()
    parts = sorted(p for p in fs.find(f"{prefix}/out") if "/_errors.parquet/" not in p)
    got = pd.concat([pq.read_table(fs.open(p, "rb")).to_pandas() for p in parts])
    got = got.sort_values("_row").reset_index(drop=True)
    pd.testing.assert_frame_equal(got, expected, check_dtype=False)
    errors = [pq.read_table(fs.open(p, "rb")) for p in fs.find(f"{prefix}/out/_errors.parquet")]
    error_rows = pa.concat_tables(errors).to_pandas().sort_values("_row")
    assert error_rows["_row"].tolist() == [7, 157, 307] and set(error_rows["_status"]) == {500}
    report = json.loads((tmp_path / "report.json").read_text())
    assert (report["rows_in"], report["rows_error"]) == (450, 3)
