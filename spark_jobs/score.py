"""Score files with a Kappa bundle on Spark.

    spark-submit spark_jobs/score.py --bundle IrisClassifier:latest --api predict \
        --input data/iris.parquet --output out/ [--format parquet] [--id-column id] \
        [--partition-by col] [--errors-output errors/]

Set PYSPARK_PYTHON (and PYSPARK_DRIVER_PYTHON) to an interpreter that has kappa installed.
"""

import sys

from kappa_batch.engines.spark_job import main

if __name__ == "__main__":
    sys.exit(main())
