"""Where a Spark scoring job's time goes, on a standalone cluster of 1-core workers.

Times, on bench/scale.py's data (files of 1M rows x 8 float32) and its RF bundle, in one
Spark application: a pass that reads every column and drops it (Spark's Parquet reading); the
row ids alone (``with_row_ids`` and reading ``_row``); the same rows through a ``mapInArrow``
that returns its input (Spark's JVM <-> Python Arrow path); and ``spark_job.run`` twice, the
first with the Python workers still to start and load the bundle. Each line says how many of the
machine's cores were busy on average meanwhile (every process counted).

    .venv/bin/python bench/spark_phases.py --files 10 [--workers 1] [--root /path/to/other/checkout]

``--root``: the driver imports kappa_batch from that checkout (a ``git worktree`` of an older
commit) for a before/after of driver-side changes; the Python workers use the installed one.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--files", type=int, default=10, help="input files of 1M rows")
    parser.add_argument("--workers", type=int, default=1, help="1-core Spark workers")
    parser.add_argument("--root", default=str(HERE.parent), help="the checkout the driver imports kappa from")
    args = parser.parse_args()
    sys.path.insert(0, str(HERE))
    sys.path.insert(0, args.root)
    import scale

    from kappa_batch.engines import spark_job
    from tests.servers import spark_standalone

    print(f"driver's kappa_batch: {Path(spark_job.__file__).parents[2]}")
    scale.make_data(args.files)
    rows = args.files * scale.FILE_ROWS
    with tempfile.TemporaryDirectory(prefix="kappa-spark-phases-", dir=HERE / ".data") as tmp:
        work = Path(tmp)
        bundle, _ = scale.save("rf", work / "rf")
        source = scale.subset(args.files, work)

        def timed(name: str, step: Callable[[], object]) -> None:
            start, (all_before, idle_before) = time.perf_counter(), scale.cpu_jiffies()
            step()
            wall, (all_after, idle_after) = time.perf_counter() - start, scale.cpu_jiffies()
            elapsed = max(1, all_after - all_before)
            busy = (elapsed - (idle_after - idle_before)) / elapsed * (os.cpu_count() or 1)
            print(
                f"{name:<34} {wall:8.2f} s {rows / wall:>12,.0f} rows/s   cores busy {busy:.2f}", flush=True
            )

        with spark_standalone(work / "spark", workers=args.workers, cores=1) as master:
            spark = spark_job.session(master)
            try:
                url = str(source)

                def drop(df: object) -> None:
                    df.write.format("noop").mode("overwrite").save()  # type: ignore[attr-defined]

                def same(batches: object) -> object:
                    yield from batches  # type: ignore[attr-defined]

                df = spark.read.parquet(url)
                print(f"{args.files * scale.FILE_ROWS:,} rows, {args.workers} worker(s) of 1 core")
                timed("read every column (first)", lambda: drop(df))
                timed("read every column", lambda: drop(df))
                timed(
                    "row ids",
                    lambda: drop(spark_job.with_row_ids(spark, spark.read.parquet(url))[0].select("_row")),
                )
                timed("mapInArrow returning its input", lambda: drop(df.mapInArrow(same, df.schema)))
                for name in ("spark_job.run (workers start)", "spark_job.run"):
                    timed(name, lambda: spark_job.run(spark, bundle, "predict", url, str(work / "out")))
            finally:
                spark.stop()


if __name__ == "__main__":
    main()
