"""Which path `kappa run --engine spark` takes (no Spark needed): Kappa's shards on the executors,
or Spark's own readers and writers; and the one line a failed Spark job ends with."""

from __future__ import annotations

import pandas as pd
import pytest

from kappa_batch.engines.spark_pool import failure, scores_shards
from kappa_batch.job import ScoreJob


@pytest.fixture
def inputs(tmp_path):
    pd.DataFrame({"a": [1.0]}).to_parquet(tmp_path / "in.parquet")
    pd.DataFrame({"a": [1.0]}).to_csv(tmp_path / "in.csv", index=False)
    return tmp_path


def _job(source: str, output: str = "/tmp/out", **more: object) -> ScoreJob:
    return ScoreJob(bundle="b", api="predict", input_file=source, output_file=output, **more)  # type: ignore[arg-type]


def test_parquet_on_paths_and_fsspec_urls_runs_as_shards(inputs):
    parquet = str(inputs / "in.parquet")
    assert scores_shards(_job(parquet), [])
    assert scores_shards(_job(str(inputs)), [])  # a folder of Parquet files
    on_hdfs = "hdfs://namenode:8020"  # file: URIs are local whatever Hadoop's default file system
    assert scores_shards(_job(f"file://{parquet}", "file:///tmp/out"), [], on_hdfs)
    assert scores_shards(_job(parquet, "s3://bucket/out"), [])


def test_what_needs_spark_readers_or_writers_keeps_them(inputs):
    parquet = str(inputs / "in.parquet")
    assert not scores_shards(_job(str(inputs / "in.csv")), [])  # the driver would stream its rows
    assert not scores_shards(_job(parquet), ["part"])
    assert not scores_shards(_job("hdfs://namenode/data/in.parquet"), [])
    assert not scores_shards(_job(parquet, "s3a://bucket/out"), [])
    assert not scores_shards(_job(parquet, errors_file="abfss://c@a.dfs.core.windows.net/e"), [])
    assert not scores_shards(_job(parquet), [], "hdfs://namenode:8020")  # plain paths mean HDFS there


def test_a_failed_job_is_said_by_its_python_error_else_by_spark_reason():
    text = (
        "An error occurred while calling z:org.apache.spark.api.python.PythonRDD.collectAndServe.\n"
        ": org.apache.spark.SparkException: Job aborted due to stage failure: Task 0 in stage 0.0 failed 1 "
        "times, most recent failure: Lost task 0.0 in stage 0.0 (TID 0) (localhost executor driver): "
        "org.apache.spark.api.python.PythonException: Traceback (most recent call last):\n"
        '  File "/x/kappa_batch/engines/remote.py", line 60, in warm\n'
        "    raise KappaError(\n"
        "kappa.errors.KappaError: the worker on h1 does not see the output /data/out\n"
        "\n\tat org.apache.spark.api.python.BasePythonRunner.handlePythonException(PythonRunner.scala:600)\n"
        "Caused by: java.io.IOException: broken pipe\n"
    )
    assert failure(RuntimeError(text)) == "KappaError: the worker on h1 does not see the output /data/out"
    crashed = (
        "An error occurred while calling o42.collectAndServe.\n: org.apache.spark.SparkException: "
        "Job aborted due to stage failure: Task 0 in stage 1.0 failed 1 times, most recent failure: "
        "Lost task 0.0: "
        "org.apache.spark.SparkException: Python worker exited unexpectedly (crashed)\n\tat org.apache.x\n"
    )
    assert failure(RuntimeError(crashed)).startswith("Task 0 in stage 1.0 failed 1 times")
    assert "Python worker exited unexpectedly" in failure(RuntimeError(crashed))
