"""Daily scoring on Spark: ``spark-submit spark_jobs/score.py`` for the day's partition.

Reads ``$KAPPA_SCORING_ROOT/input/date=YYYY-MM-DD/`` and writes
``$KAPPA_SCORING_ROOT/spark-scores/date=YYYY-MM-DD/`` with ``$KAPPA_SCORING_BUNDLE``
(default ``IrisClassifier:latest``, resolved to one version when the task starts) on
the Spark master ``$KAPPA_SPARK_MASTER`` (default ``local[2]``). Spark writes in
overwrite mode, so a re-run of a date replaces that date's scores.
"""

from __future__ import annotations

import os
from datetime import datetime, timedelta
from pathlib import Path

from airflow.sdk import DAG

from kappa_batch.airflow import KappaScoreOperator

ROOT = os.environ.get("KAPPA_SCORING_ROOT", "/tmp/kappa-scoring")
BUNDLE = os.environ.get("KAPPA_SCORING_BUNDLE", "IrisClassifier")
SCRIPT = Path(__file__).resolve().parents[1] / "spark_jobs" / "score.py"

with DAG(
    dag_id="kappa_spark_scoring",
    description="Score the day's partition on Spark with spark_jobs/score.py",
    schedule="@daily",
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    default_args={
        "retries": int(os.environ.get("KAPPA_SCORING_RETRIES", "1")),
        "retry_delay": timedelta(minutes=10),
    },
    tags=["kappa", "scoring", "spark"],
) as dag:
    KappaScoreOperator(
        task_id="score_on_spark",
        bundle=BUNDLE if ":" in BUNDLE else BUNDLE + ":latest",
        api="predict",
        input_path=ROOT + "/input/date={{ ds }}/",
        output_path=ROOT + "/spark-scores/date={{ ds }}/",
        engine="spark",
        engine_conf={
            "master": os.environ.get("KAPPA_SPARK_MASTER", "local[2]"),
            "script": str(SCRIPT) if SCRIPT.exists() else None,
            "conf": {"spark.ui.enabled": "false", "spark.sql.shuffle.partitions": "4"},
        },
    )
