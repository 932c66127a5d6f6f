"""One scorer under every engine: the same bundle and input give the same outputs, ids and failed
rows through `kappa run`, a Spark job, Spark `score()` and its UDF, Dask `score()` and HTTP."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

pytestmark = [pytest.mark.spark, pytest.mark.dask]

SERVICE = """
import kappa
from kappa.adapters import DataframeInput, DefaultOutput

@kappa.env(infer_pip_packages=False)
class Parity(kappa.BentoService):
    @kappa.api(
        input=DataframeInput(columns=["a", "b"], dtype="float64"),
        output=DefaultOutput(dtype="float64"),
        batch=True,
    )
    def predict(self, df):
        if (df["a"] < 0).any():
            raise ValueError("negative a")
        return (2 * df["a"] + df["b"]).to_numpy()
"""


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    root = tmp_path_factory.mktemp("parity_svc")
    (root / "parity_service.py").write_text(SERVICE)
    sys.path.insert(0, str(root))
    try:
        import parity_service
    finally:
        sys.path.remove(str(root))
    path = parity_service.Parity().save_to_dir(str(tmp_path_factory.mktemp("bundle") / "parity"))
    sys.modules.pop("parity_service", None)
    return path


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    rng = np.random.default_rng(7)
    data = pd.DataFrame({"a": rng.uniform(0.1, 3, size=900).round(3), "b": rng.normal(size=900).round(3)})
    data.loc[[5, 333, 899], "a"] = -1.25  # rows the model refuses
    data.insert(0, "id", [f"r{i:03d}" for i in range(len(data))])
    return data


@pytest.fixture(scope="module")
def inputs(frame, tmp_path_factory):
    """The same rows as three Parquet files (several row groups each) and as three CSV files, in
    folders whose names Spark's URIs escape (a space, a percent sign)."""
    root = tmp_path_factory.mktemp("parity_in")
    (root / "parquet").mkdir()
    (root / "csv").mkdir()
    for index in range(3):
        part = frame.iloc[index * 300 : (index + 1) * 300]
        table = pa.Table.from_pandas(part, preserve_index=False)
        pq.write_table(table, root / "parquet" / f"part {index}%20.parquet", row_group_size=70)
        pacsv.write_csv(table, root / "csv" / f"part {index}%20.csv")
    return root


@pytest.fixture(scope="module")
def spark(spark):
    spark.conf.set("spark.sql.files.maxPartitionBytes", "4096")  # several splits per file
    return spark


def _parts(folder: Path) -> pd.DataFrame:
    files = sorted(
        p for p in folder.rglob("part-*.parquet") if not {"_errors.parquet", "_kappa"} & set(p.parts)
    )
    return pd.concat([pq.read_table(f).to_pandas() for f in files], ignore_index=True)


def _errors(path: Path) -> pd.DataFrame:
    return pq.read_table(path).to_pandas()


def _kappa_run(bundle, source: Path, target: Path, *extra: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    from kappa.cli.main import cli

    args = ["run", bundle, "predict", "--input-file", str(source), "--output-file", str(target), *extra]
    result = CliRunner().invoke(cli, [*args, "--batch-size", "100", "--no-progress"])
    assert result.exit_code == 0, result.output
    return _parts(target), _errors(target / "_errors.parquet")


def _sorted(frame: pd.DataFrame, key: str) -> pd.DataFrame:
    return frame.sort_values(key).reset_index(drop=True)


@pytest.mark.parametrize("kind", ["parquet", "csv"])
def test_kappa_run_and_a_spark_job_give_rows_the_same_ids_outputs_and_errors(
    spark, bundle, inputs, kind, tmp_path
):
    from kappa_batch.engines import spark_job

    source = inputs / kind
    local, local_errors = _kappa_run(bundle, source, tmp_path / "local")
    assert list(local.columns) == ["_row", "prediction"] and len(local) == 897
    assert list(local_errors.columns) == ["_row", "_status", "_message"]
    assert sorted(local_errors["_row"]) == [5, 333, 899]

    for _ in range(2):  # a re-run writes the same rows again, in place of the first run's
        report = spark_job.run(
            spark, bundle, "predict", str(source), str(tmp_path / "spark"), input_format=kind
        )
    assert (report.rows_in, report.rows_error) == (900, 3)
    got = _parts(tmp_path / "spark")
    assert list(got.columns) == ["_row", "prediction"]
    pd.testing.assert_frame_equal(_sorted(got, "_row"), _sorted(local, "_row"), check_dtype=False)
    errors = _errors(tmp_path / "spark" / "_errors.parquet")
    assert list(errors.columns) == ["_row", "_status", "_message"]
    pd.testing.assert_frame_equal(_sorted(errors, "_row"), _sorted(local_errors, "_row"), check_dtype=False)


def test_parquet_row_ids_from_the_footers_equal_those_spark_counts(spark, inputs):
    """The job reads each Parquet file's rows from its footer (no pass over the data); the ids are
    those of Spark's own count, file names that its URIs escape included."""
    from kappa_batch.engines import spark_job

    df = spark.read.parquet(str(inputs / "parquet"))
    counts = spark_job.footer_counts(df.inputFiles())
    assert counts is not None and sorted(rows for _, rows in counts) == [300, 300, 300]
    seen = {r[0]: r[1] for r in df.groupBy("_metadata.file_path").count().collect()}
    assert dict(counts) == seen  # keyed as Spark names the files
    ids = {}
    for way in ("footers", "spark"):
        placed, positions = spark_job.with_row_ids(spark, df, count_with=way)
        assert positions is None
        ids[way] = placed.select("_row", "id").toPandas().sort_values("_row").reset_index(drop=True)
    pd.testing.assert_frame_equal(ids["footers"], ids["spark"])
    assert list(ids["footers"]["_row"]) == list(range(900))
    assert list(ids["footers"]["id"]) == [f"r{i:03d}" for i in range(900)]
    assert spark_job.footer_counts(["hdfs://namenode/data/part-0.parquet"]) is None


def test_a_file_the_count_missed_or_that_grew_fails_the_job_instead_of_losing_its_rows(
    spark, inputs, monkeypatch
):
    from kappa_batch.engines import spark_job

    df = spark.read.parquet(str(inputs / "parquet"))
    counted = spark_job.footer_counts(df.inputFiles())
    assert counted is not None
    first, rows = counted[0]
    for changed in (counted[1:], [(first, rows - 1), *counted[1:]]):  # a file not counted; one grown since
        monkeypatch.setattr(spark_job, "footer_counts", lambda files, counts=changed: counts)
        placed, _ = spark_job.with_row_ids(spark, df)
        with pytest.raises(Exception, match="changed since the job counted its rows; run the job again"):
            placed.select("_row").collect()


def test_spark_score_the_udf_dask_and_http_agree_with_kappa_run(spark, bundle, frame, inputs, tmp_path):
    import dask.dataframe as dd
    from starlette.testclient import TestClient

    from kappa_batch import dask as kdask
    from kappa_batch import spark as kspark
    from kappa_online.app import create_app

    local, local_errors = _kappa_run(bundle, inputs / "parquet", tmp_path / "local", "--id-column", "id")
    expected = _sorted(local, "id")
    failed = sorted(local_errors["id"])
    assert failed == ["r005", "r333", "r899"]

    scored = kspark.score(spark.createDataFrame(frame), bundle, "predict", id_column="id").toPandas()
    assert list(scored.columns) == ["id", "prediction", "_status", "_message"]
    ok = _sorted(scored[scored["_status"].isna()], "id")
    pd.testing.assert_frame_equal(ok[["id", "prediction"]], expected, check_dtype=False)
    bad = _sorted(scored[scored["_status"].notna()], "id")
    pd.testing.assert_frame_equal(
        bad[["id", "_status", "_message"]], _sorted(local_errors, "id"), check_dtype=False
    )

    udf = kspark.udf(spark, bundle, "predict", errors="column")
    column = spark.createDataFrame(frame).select("id", udf("a", "b").alias("p")).toPandas()
    values = {r["id"]: r["p"]["value"] for _, r in column.iterrows() if r["p"]["error"] is None}
    assert values == dict(zip(expected["id"], expected["prediction"], strict=True))
    udf_failed = {
        r["id"]: r["p"]["error"]["message"] for _, r in column.iterrows() if r["p"]["error"] is not None
    }
    assert udf_failed == dict(zip(local_errors["id"], local_errors["_message"], strict=True))

    ddf = dd.from_pandas(frame, npartitions=4)
    on_dask = kdask.score(ddf, bundle, "predict", id_column="id").compute()
    assert list(on_dask.columns) == ["id", "prediction", "_status", "_message"]
    dask_ok = _sorted(on_dask[on_dask["_status"].isna()][["id", "prediction"]].astype(object), "id")
    pd.testing.assert_frame_equal(dask_ok, expected.astype(object), check_dtype=False)
    assert sorted(on_dask.loc[on_dask["_status"].notna(), "id"]) == failed

    with TestClient(create_app(bundle)) as http:
        rows = frame.loc[~frame["id"].isin(failed), ["a", "b"]].to_numpy().tolist()
        answer = http.post("/predict", json=rows)
        assert answer.status_code == 200
        assert answer.json() == pytest.approx(expected["prediction"].tolist())
        refused = http.post("/predict", json=[[1.0, 2.0], [-1.25, 0.0]])
        assert refused.status_code == 400  # the model's ValueError: the request's fault, by its kind
        assert refused.json()["failed_rows"] == [
            {
                "row": 1,
                "status": 400,
                "message": "the model rejected this input: " + local_errors["_message"][0],
            }
        ]
