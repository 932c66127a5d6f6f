"""Spark reading local Parquet: Spark's own reader against Kappa's fsspec data source
(kappa_batch.spark_files, what spark_jobs/score.py uses for s3://, gs://, az:// without Hadoop jars).

One SparkSession (local[2]); each round reads the same file fully into Spark's noop sink with
both, back to back, after a warm-up; prints each round's ratio and the median.

    .venv/bin/python bench/spark_files.py [--rows 2000000] [--repeat 7]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main() -> None:
    sys.path.insert(0, str(HERE))
    from batch_scoring import make_data

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=2_000_000)
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    source = make_data(args.rows, f"lr_{args.rows}")
    os.environ["PYSPARK_PYTHON"] = sys.executable
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    from kappa_batch import spark_files
    from kappa_batch.engines.spark_job import session

    spark = session("local[2]", "kappa-bench-files")
    spark.sparkContext.setLogLevel("ERROR")
    contenders = {
        "spark_parquet": lambda: spark.read.parquet(str(source)),
        "kappa_fsspec": lambda: spark_files.read(spark, f"file://{source}", None, row_ids=False),
        "kappa_fsspec_ids": lambda: spark_files.read(spark, f"file://{source}", None, row_ids=True),
    }
    for make in contenders.values():  # warm-up: JVM code paths, Python workers
        make().limit(100_000).write.format("noop").mode("overwrite").save()
    seconds: dict[str, list[float]] = {name: [] for name in contenders}
    for _ in range(args.repeat):
        for name, make in contenders.items():
            start = time.perf_counter()
            make().write.format("noop").mode("overwrite").save()
            seconds[name].append(time.perf_counter() - start)
    spark.stop()
    base = seconds["spark_parquet"]
    print(f"{'reader':<18} {'median s':>9} {'rows/s':>12}  x spark parquet by round (median)")
    for name, values in seconds.items():
        ratios = [b / v for b, v in zip(base, values, strict=True)]
        rounds = ", ".join(f"{r:.2f}" for r in ratios)
        median, ratio = statistics.median(values), statistics.median(ratios)
        print(f"{name:<18} {median:>9.2f} {args.rows / median:>12,.0f}  {rounds} ({ratio:.2f})")


if __name__ == "__main__":
    main()
