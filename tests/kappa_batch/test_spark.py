"""Spark: the Arrow UDF and DataFrame scoring in local mode, and spark-submit on a real standalone cluster."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

pytestmark = pytest.mark.spark
ROOT = Path(__file__).resolve().parents[2]
KAPPA = str(Path(sys.executable).parent / "kappa")

SERVICE = """
import kappa
import pandas as pd
from kappa.adapters import DataframeInput, DataframeOutput, JsonOutput
from kappa.frameworks.sklearn import SklearnModelArtifact

@kappa.artifacts([SklearnModelArtifact("model")])
class SparkIris(kappa.BentoService):
    @kappa.api(input=DataframeInput(), batch=True)
    def predict(self, df):
        if (df.iloc[:, 0] < 0).any():
            raise ValueError("negative sepal length")
        return self.artifacts.model.predict(df.to_numpy())

    @kappa.api(input=DataframeInput(), output=JsonOutput(), batch=True)
    def labels(self, df):
        return [{"class": int(v)} for v in self.artifacts.model.predict(df.to_numpy())]

    @kappa.api(input=DataframeInput(), batch=True)
    def proba(self, df):
        return self.artifacts.model.predict_proba(df.to_numpy())

    @kappa.api(input=DataframeInput(), output=DataframeOutput(), batch=True)
    def both(self, df):
        probabilities = self.artifacts.model.predict_proba(df.to_numpy())
        return pd.DataFrame({"label": probabilities.argmax(axis=1), "score": probabilities.max(axis=1)})
"""
FEATURES = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
SPARK_ENV = {**os.environ, "PYSPARK_PYTHON": sys.executable, "SPARK_LOCAL_IP": "127.0.0.1"}


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    root = tmp_path_factory.mktemp("spark_svc")
    (root / "spark_iris_service.py").write_text(SERVICE)
    sys.path.insert(0, str(root))
    try:
        import spark_iris_service
    finally:
        sys.path.remove(str(root))
    X, y = load_iris(return_X_y=True)
    svc = spark_iris_service.SparkIris().pack("model", LogisticRegression(max_iter=1000).fit(X, y))
    path = svc.save_to_dir(str(tmp_path_factory.mktemp("bundle") / "iris"))
    sys.modules.pop("spark_iris_service", None)
    return path


@pytest.fixture(scope="module")
def iris_frame():
    from sklearn.datasets import load_iris

    data = load_iris(as_frame=True).frame.iloc[:, :4]
    data.columns = FEATURES
    data.insert(0, "id", [f"row{i}" for i in range(len(data))])
    data.loc[7, "sepal_length"] = -1.0
    return data


def local_predictions(bundle, data: pd.DataFrame, api: str = "predict") -> pd.DataFrame:
    from kappa_batch.runner import BatchRunner

    result = BatchRunner(bundle, api).run(__import__("pyarrow").Table.from_pandas(data[FEATURES]))
    return pd.DataFrame({"id": data["id"], "prediction": result.outputs.column(0).to_pylist()})


def test_udf_scores_columns_and_structs(spark, bundle, iris_frame):
    from pyspark.sql.functions import struct

    from kappa_batch import spark as kspark

    good = iris_frame.drop(index=7)
    df = spark.createDataFrame(good)
    udf = kspark.udf(spark, bundle, "predict", return_type="long")
    by_name = df.withColumn("prediction", udf(*FEATURES)).toPandas()
    by_struct = df.withColumn("prediction", udf(struct(*FEATURES))).toPandas()
    expected = local_predictions(bundle, good)["prediction"].tolist()
    assert by_name["prediction"].tolist() == expected
    assert by_struct["prediction"].tolist() == expected
    labels = kspark.udf(spark, bundle, "labels")  # JsonOutput declares a string column
    first = df.withColumn("label", labels(*FEATURES)).limit(1).toPandas()["label"][0]
    assert json.loads(first) == {"class": expected[0]}


def test_udf_array_and_struct_results(spark, bundle, iris_frame):
    from kappa_batch import spark as kspark

    good = iris_frame.drop(index=7)
    df = spark.createDataFrame(good)
    proba = kspark.udf(spark, bundle, "proba", return_type="array<double>")
    rows = df.select(proba(*FEATURES).alias("p")).toPandas()["p"]
    assert all(len(r) == 3 and abs(sum(r) - 1) < 1e-9 for r in rows)
    both = kspark.udf(spark, bundle, "both", return_type="label long, score double")
    result = df.select(both(*FEATURES).alias("r")).select("r.label", "r.score").toPandas()
    assert result["label"].tolist() == local_predictions(bundle, good)["prediction"].tolist()
    assert ((result["score"] > 0.3) & (result["score"] <= 1)).all()


def test_udf_errors_as_a_column_or_a_failed_task(spark, bundle, iris_frame):
    from kappa_batch import spark as kspark

    df = spark.createDataFrame(iris_frame)
    column = kspark.udf(spark, bundle, "predict", return_type="long", errors="column")
    rows = df.withColumn("p", column(*FEATURES)).select("id", "p.value", "p.error").toPandas()
    failed = rows[rows["error"].notna()]
    assert failed["id"].tolist() == ["row7"]
    assert failed["error"].iloc[0]["message"] == "ValueError: negative sepal length"
    assert rows["value"].notna().sum() == len(iris_frame) - 1
    raising = kspark.udf(spark, bundle, "predict", return_type="long")
    with pytest.raises(Exception, match="1 row\\(s\\) failed .* negative sepal length"):
        df.withColumn("p", raising(*FEATURES)).collect()


def test_undeclared_output_type_is_a_clear_error(spark, bundle):
    from kappa.errors import InputError
    from kappa_batch import spark as kspark

    with pytest.raises(InputError, match="does not declare its output type; pass return_type="):
        kspark.udf(spark, bundle, "predict")


def test_executors_with_other_packages_fail_fast(spark, make_module, tmp_path, iris_frame):
    from kappa_batch import spark as kspark

    requirements = tmp_path / "requirements.txt"
    requirements.write_text("numpy==0.0.1\nnot-a-real-package-kappa==1.0\n")
    module = make_module(
        f"""
        import kappa
        from kappa.adapters import DataframeInput

        @kappa.env(requirements_txt_file={str(requirements)!r})
        class Pinned(kappa.BentoService):
            @kappa.api(input=DataframeInput(), batch=True)
            def predict(self, df):
                return df.iloc[:, 0].tolist()
        """
    )
    path = module.Pinned().save_to_dir(str(tmp_path / "pinned"))
    df = spark.createDataFrame(iris_frame[FEATURES].head(3))
    strict = kspark.udf(spark, path, "predict", return_type="double")
    with pytest.raises(Exception) as info:
        df.withColumn("p", strict(*FEATURES)).collect()
    message = str(info.value)
    assert "packages differ" in message and "numpy: bundle needs ==0.0.1, installed" in message
    assert "not-a-real-package-kappa: bundle needs ==1.0, not installed" in message
    lenient = kspark.udf(spark, path, "predict", return_type="double", env_check="warn")
    assert df.withColumn("p", lenient(*FEATURES)).count() == 3


def test_score_dataframe_keeps_ids_and_splits_failures(spark, bundle, iris_frame):
    from kappa_batch import spark as kspark

    scored = kspark.score(spark.createDataFrame(iris_frame), bundle, "predict", id_column="id").toPandas()
    assert list(scored.columns) == ["id", "prediction", "_status", "_message"]
    ok = scored[scored["_status"].isna()].sort_values("id")
    expected = local_predictions(bundle, iris_frame.drop(index=7)).sort_values("id")
    assert ok["id"].tolist() == expected["id"].tolist()
    assert ok["prediction"].astype(int).tolist() == expected["prediction"].tolist()
    assert scored.loc[scored["_status"].notna(), "id"].tolist() == ["row7"]


def test_score_dataframe_can_fail_on_the_first_failed_row(spark, bundle, iris_frame):
    from kappa.errors import InputError
    from kappa_batch import spark as kspark

    clean = spark.createDataFrame(iris_frame.drop(index=7))
    strict = kspark.score(clean, bundle, "predict", id_column="id", errors="raise")
    assert strict.columns == ["id", "prediction"]
    assert strict.count() == len(iris_frame) - 1
    with pytest.raises(Exception, match="negative sepal length"):
        kspark.score(spark.createDataFrame(iris_frame), bundle, "predict", "id", errors="raise").collect()
    with pytest.raises(InputError, match="errors must be"):
        kspark.score(clean, bundle, "predict", errors="drop")


def _write_input(iris_frame, folder: Path, partitioned: bool = False) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    big = pd.concat([iris_frame] * 20, ignore_index=True)
    big["id"] = [f"row{i}" for i in range(len(big))]
    if partitioned:
        big["part"] = np.arange(len(big)) % 3
    path = folder / ("iris-part.parquet" if partitioned else "iris.parquet")
    big.to_parquet(path, row_group_size=500)
    return path


def _read(folder: Path) -> pd.DataFrame:
    files = sorted(
        p for p in folder.rglob("part-*.parquet") if not {"_errors.parquet", "_kappa"} & set(p.parts)
    )
    return pd.concat([pq.read_table(f).to_pandas() for f in files], ignore_index=True)


def _local_run(bundle, source: Path, target: Path) -> pd.DataFrame:
    result = subprocess.run(
        [
            KAPPA,
            "run",
            bundle,
            "predict",
            "--input-file",
            str(source),
            "--output-file",
            str(target),
            "--id-column",
            "id",
        ],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    return _read(target).sort_values("id").reset_index(drop=True)


def test_kappa_run_engine_spark_matches_the_local_engine(bundle, iris_frame, tmp_path):
    source = _write_input(iris_frame, tmp_path / "in")
    expected = _local_run(bundle, source, tmp_path / "local")
    assert len(expected) == 2980  # 20 copies of iris, each with one bad row
    args = [
        KAPPA,
        "run",
        bundle,
        "predict",
        "--input-file",
        str(source),
        "--output-file",
        str(tmp_path / "spark"),
        "--id-column",
        "id",
        "--engine",
        "spark",
        "--master",
        "local[2]",
        "--report",
        str(tmp_path / "r.json"),
    ]
    # one run: a second one replacing the output: test_a_rerun_replaces_the_output_partition_by_partition
    result = subprocess.run(args, capture_output=True, text=True, env=SPARK_ENV)
    assert result.returncode == 0, result.stderr[-3000:]
    got = _read(tmp_path / "spark").sort_values("id").reset_index(drop=True)
    pd.testing.assert_frame_equal(
        got[["id", "prediction"]], expected[["id", "prediction"]], check_dtype=False
    )
    errors = pq.read_table(tmp_path / "spark" / "_errors.parquet").to_pandas()
    assert sorted(errors["id"]) == sorted(f"row{7 + 150 * i}" for i in range(20))
    assert set(errors["_status"]) == {500} and list(errors.columns) == ["id", "_status", "_message"]
    report = json.loads((tmp_path / "r.json").read_text())
    assert (report["engine"], report["rows_in"], report["rows_error"]) == ("spark", 3000, 20)


def test_kappa_run_engine_spark_resumes_what_a_killed_run_left(make_module, tmp_path):
    """`kappa run --engine spark` writes Kappa's own shards (each one a Spark task whose Python worker
    reads, scores and writes it), so a run killed mid-way resumes as the local engine's does."""
    import signal
    import time

    from tests.faults.checks import doubler, doubler_input, exactly_once

    n, batch, bad = 6_000, 300, [3, 4_444]
    bad_ids = doubler_input(tmp_path / "in.parquet", n, bad, batch)
    service = make_module(doubler(0.3)).Doubler()
    bundle = service.save_to_dir(str(tmp_path / "bundle"))
    target, report_file = tmp_path / "out", tmp_path / "r.json"
    args = [KAPPA, "run", bundle, "score", "--input-file", str(tmp_path / "in.parquet")]
    args += ["--output-file", str(target), "--batch-size", str(batch), "--id-column", "id"]
    args += ["--engine", "spark", "--master", "local[2]"]
    first = subprocess.Popen(args, env=SPARK_ENV, start_new_session=True, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while len(list(target.glob("part-*.parquet"))) < 4:
        assert first.poll() is None, first.communicate()[1][-3000:]
        assert time.monotonic() < deadline, "the run never wrote four shards"
        time.sleep(0.05)
    os.killpg(first.pid, signal.SIGKILL)  # the driver and its JVM, as a lost machine would
    first.wait(timeout=30)
    kept = len(list(target.glob("part-*.parquet")))
    assert 4 <= kept < n // batch and not (target / "_SUCCESS").exists()
    again = subprocess.run(
        [*args, "--resume", "--report", str(report_file)], env=SPARK_ENV, capture_output=True, text=True
    )
    assert again.returncode == 0, again.stderr[-3000:]
    scored, report = exactly_once(target, n, bad_ids, report_file)
    assert (scored["prediction"] == scored["id"].str[1:].astype(float) * 2).all()
    assert report["engine"] == "spark" and report["shards_resumed"] == kept  # a part file is written last
    assert report["shards"] == n // batch


def test_kappa_run_engine_spark_keeps_spark_own_path_where_it_is_needed(bundle, iris_frame, tmp_path):
    """--partition-by (and Hadoop file systems, ORC output) keep Spark's readers and writers, where
    Kappa's shards and --resume do not apply: --resume there is refused in one line."""
    from click.testing import CliRunner

    from kappa.cli.main import cli

    source = _write_input(iris_frame, tmp_path / "in", partitioned=True)
    args = ["run", bundle, "predict", "--input-file", str(source), "--output-file", str(tmp_path / "o")]
    args += ["--id-column", "id", "--engine", "spark", "--partition-by", "part"]
    refused = CliRunner().invoke(cli, [*args, "--resume"])
    assert refused.exit_code == 1 and "--resume needs Kappa's own shards" in refused.output
    assert "Traceback" not in refused.output
    workers = CliRunner().invoke(cli, [*args, "--workers", "2"])
    assert workers.exit_code == 1 and "Spark's cluster decides" in workers.output


@pytest.mark.slow
def test_spark_submit_on_a_standalone_cluster(bundle, iris_frame, tmp_path, spark_cluster):
    from tests.servers import spark_home

    expected = _local_run(bundle, _write_input(iris_frame, tmp_path / "in"), tmp_path / "local")
    source = _write_input(iris_frame, tmp_path / "in", partitioned=True)  # `part` is not a feature
    output = tmp_path / "spark-out"
    env = {
        **os.environ,
        "PYSPARK_PYTHON": sys.executable,
        "PYSPARK_DRIVER_PYTHON": sys.executable,
        "SPARK_LOCAL_IP": "127.0.0.1",
        "SPARK_HOME": str(spark_home()),
    }
    command = [
        str(spark_home() / "bin" / "spark-submit"),
        "--master",
        spark_cluster,
        "--conf",
        f"spark.pyspark.python={sys.executable}",
        "--conf",
        "spark.executor.memory=1g",
        str(ROOT / "spark_jobs" / "score.py"),
        "--bundle",
        bundle,
        "--api",
        "predict",
        "--input",
        str(source),
        "--output",
        str(output),
        "--id-column",
        "id",
        "--partition-by",
        "part",
        "--errors-output",
        str(tmp_path / "errors"),
    ]
    # one run: a second one replacing the output: test_a_rerun_replaces_the_output_partition_by_partition
    result = subprocess.run(command, capture_output=True, text=True, env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-4000:]
    got = _read(output).sort_values("id").reset_index(drop=True)
    assert len(got) == len(expected) == 2980
    pd.testing.assert_frame_equal(
        got[["id", "prediction"]], expected[["id", "prediction"]], check_dtype=False
    )
    assert sorted(p.name for p in output.iterdir() if p.name.startswith("part=")) == [
        "part=0",
        "part=1",
        "part=2",
    ]
    assert len(pq.read_table(tmp_path / "errors")) == 20


def test_a_rerun_replaces_the_output_partition_by_partition(spark, bundle, iris_frame, tmp_path):
    """spark_jobs' job run twice into one output, partitioned: no row is there twice, and the
    errors output holds the second run's errors only."""
    from kappa_batch.engines import spark_job

    source = _write_input(iris_frame, tmp_path / "in", partitioned=True)
    for _ in range(2):
        report = spark_job.run(
            spark, bundle, "predict", str(source), str(tmp_path / "out"), id_column="id",
            partition_by=["part"], errors_output=str(tmp_path / "errors"),
        )  # fmt: skip
        assert (report.rows_in, report.rows_error) == (3000, 20)
    got = _read(tmp_path / "out")
    assert len(got) == 2980 and got["id"].is_unique
    assert sorted(p.name for p in (tmp_path / "out").iterdir() if p.name.startswith("part=")) == [
        "part=0",
        "part=1",
        "part=2",
    ]
    assert len(pq.read_table(tmp_path / "errors")) == 20


@pytest.mark.server
def test_spark_resolves_and_records_through_the_registry(spark, bundle, iris_frame, use_gamma, tmp_path):
    """score(), the UDF and spark_jobs' run take `Name:latest` from the registry server; the run's
    report goes back to it."""
    from click.testing import CliRunner

    from kappa.cli.main import cli
    from kappa_batch import spark as kspark
    from kappa_batch.engines import spark_job

    imported = CliRunner().invoke(cli, ["import", bundle, "-o", "json"])
    assert imported.exit_code == 0, imported.output
    tag = "SparkIris:" + json.loads(imported.stdout)["version"]
    good = iris_frame.drop(index=7)
    expected = local_predictions(bundle, good)["prediction"].tolist()
    udf = kspark.udf(spark, "SparkIris:latest", "predict", return_type="long")
    by_udf = spark.createDataFrame(good).withColumn("p", udf(*FEATURES)).toPandas()
    assert by_udf["p"].tolist() == expected
    scored = kspark.score(
        spark.createDataFrame(good), "SparkIris:latest", "predict", id_column="id"
    ).toPandas()
    assert scored.sort_values("id")["prediction"].astype(int).tolist() == (
        local_predictions(bundle, good).sort_values("id")["prediction"].tolist()
    )
    source = _write_input(iris_frame, tmp_path / "in")
    report = spark_job.run(
        spark, "SparkIris:latest", "predict", str(source), str(tmp_path / "out"), id_column="id"
    )
    assert (report.bundle, report.rows_in, report.rows_error) == (tag, 3000, 20)
    runs = json.loads(CliRunner().invoke(cli, ["runs", "list", "SparkIris", "-o", "json"]).stdout)
    assert [(r["engine"], r["rows_in"], r["output"]) for r in runs if r["run_id"] == report.run_id] == [
        ("spark", 3000, str(tmp_path / "out"))
    ]


def test_python_workers_keep_to_the_cores_spark_gives_a_task(spark, probe_bundle):
    """Each Python worker's BLAS/OpenMP pools: spark.task.cpus (1) by default, or threads_per_worker."""
    from kappa.errors import InputError
    from kappa_batch import spark as kspark

    df = spark.createDataFrame(pd.DataFrame({"x": [float(i) for i in range(200)]})).repartition(2)
    two = kspark.udf(spark, probe_bundle, "threads", return_type="long", threads_per_worker=2)
    assert {row[0] for row in df.select(two("x")).collect()} == {2}
    # Python workers are reused: the default must narrow them again, to spark.task.cpus
    default = kspark.udf(spark, probe_bundle, "threads", return_type="long")
    cpus = int(spark.conf.get("spark.task.cpus", "1"))
    assert {row[0] for row in df.select(default("x")).collect()} == {cpus}
    with pytest.raises(InputError, match="at least 1"):
        kspark.udf(spark, probe_bundle, "threads", return_type="long", threads_per_worker=0)
