"""One contender of bench/spark_scoring.py, run in its own process (and virtual environment).

Prints `SECONDS <s> ROWS <n>` for the timed action: scoring every row of the Parquet file
on Spark local[2] and writing the result to Spark's "noop" sink (so no contender pays for
output files), after a warm-up that loads the model in every Python worker: 20,000 rows in
two partitions scored at once, so both of local[2]'s Python workers start and load before
the clock starts (a 10,000-row warm-up was one task, i.e. one worker, which left the other
worker's start and model load inside the timed run).
"""

import os
import sys
import time
from typing import Iterator, Tuple  # noqa: UP035  (pyspark reads these hints)

FEATURES = [f"f{i}" for i in range(16)]
_model = None


def _load(path: str):  # type: ignore[no-untyped-def]
    global _model
    if _model is None:
        import joblib

        _model = joblib.load(path)
    return _model


def main(kind: str, model_arg: str, source: str) -> None:
    os.environ["PYSPARK_PYTHON"] = sys.executable
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    import numpy as np
    import pandas as pd
    import pyarrow as pa
    from pyspark.sql import SparkSession

    spark = (
        SparkSession.builder.master("local[2]")
        .config("spark.driver.host", "127.0.0.1")
        .config("spark.driver.bindAddress", "127.0.0.1")
        .config("spark.sql.execution.arrow.maxRecordsPerBatch", "65536")
        .config("spark.python.worker.reuse", "true")
        .config("spark.ui.enabled", "false")
        .getOrCreate()
    )
    spark.sparkContext.setLogLevel("ERROR")
    df = spark.read.parquet(source)

    if kind == "kappa_udf":
        from kappa_batch import spark as kspark

        udf = kspark.udf(spark, model_arg, "predict", return_type="long")

        def score(frame):  # type: ignore[no-untyped-def]
            return frame.select(udf(*FEATURES).alias("prediction"))
    elif kind in ("kappa_score", "kappa_score_raise"):
        from kappa_batch import spark as kspark

        errors = "raise" if kind == "kappa_score_raise" else "column"

        def score(frame):  # type: ignore[no-untyped-def]
            return kspark.score(frame, model_arg, "predict", errors=errors)
    elif kind == "mlflow":
        import mlflow.pyfunc

        udf = mlflow.pyfunc.spark_udf(spark, model_arg, result_type="long", env_manager="local")

        def score(frame):  # type: ignore[no-untyped-def]
            return frame.select(udf(*FEATURES).alias("prediction"))
    elif kind in ("hand_udf", "noop_udf"):
        from pyspark.sql.pandas.functions import ArrowUDFType, arrow_udf

        def columns_fn(batches: Iterator[Tuple[pa.Array, ...]]) -> Iterator[pa.Array]:  # noqa: UP006
            model = _load(model_arg) if kind == "hand_udf" else None
            for columns in batches:
                if model is None:
                    yield pa.array(np.zeros(len(columns[0]), dtype=np.int64))
                else:
                    features = np.column_stack([c.to_numpy() for c in columns])
                    yield pa.array(model.predict(features).astype(np.int64))

        arrow_column_udf = arrow_udf(columns_fn, "long", ArrowUDFType.SCALAR_ITER)  # type: ignore[call-overload]

        def score(frame):  # type: ignore[no-untyped-def]
            return frame.select(arrow_column_udf(*FEATURES).alias("prediction"))
    elif kind == "hand_pandas":
        from pyspark.sql.functions import pandas_udf

        @pandas_udf("long")  # type: ignore[call-overload]
        def predict(batches: Iterator[Tuple[pd.Series, ...]]) -> Iterator[pd.Series]:  # noqa: UP006
            model = _load(model_arg)
            for columns in batches:
                yield pd.Series(model.predict(np.column_stack([c.to_numpy() for c in columns])))

        def score(frame):  # type: ignore[no-untyped-def]
            return frame.select(predict(*FEATURES).alias("prediction"))
    elif kind in ("hand_arrow", "noop_arrow"):
        schema = "prediction long"

        def batches_fn(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
            model = _load(model_arg) if kind == "hand_arrow" else None
            for batch in batches:
                if model is None:
                    values = np.zeros(batch.num_rows, dtype=np.int64)
                else:
                    features = np.column_stack([batch.column(f).to_numpy() for f in FEATURES])
                    values = model.predict(features).astype(np.int64)
                yield pa.RecordBatch.from_arrays([pa.array(values)], names=["prediction"])

        def score(frame):  # type: ignore[no-untyped-def]
            return frame.mapInArrow(batches_fn, schema)
    else:
        raise SystemExit(f"unknown contender {kind}")

    score(df.limit(20_000).repartition(2)).write.format("noop").mode("overwrite").save()  # warm-up
    rows = df.count()
    start = time.perf_counter()
    score(df).write.format("noop").mode("overwrite").save()
    seconds = time.perf_counter() - start
    spark.stop()
    print(f"SECONDS {seconds:.4f} ROWS {rows}")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3])
