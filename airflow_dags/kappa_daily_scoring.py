"""Daily batch scoring: wait for the bundle, score the day's partition, check the row counts.

Reads ``$KAPPA_SCORING_ROOT/input/date=YYYY-MM-DD/`` and writes
``$KAPPA_SCORING_ROOT/scores/date=YYYY-MM-DD/`` (default root: /tmp/kappa-scoring) with
the newest ready version of ``$KAPPA_SCORING_BUNDLE`` (default IrisClassifier) whose
labels match ``$KAPPA_SCORING_LABELS`` (a selector such as ``stage=prod``; optional).
A re-run of a date replaces that date's scores.
"""

from __future__ import annotations

import os
from datetime import datetime, timedelta
from typing import Any

from airflow.sdk import DAG, task

from kappa_batch.airflow import KappaBundleSensor, KappaScoreOperator
from kappa_batch.validate import validate_report

ROOT = os.environ.get("KAPPA_SCORING_ROOT", "/tmp/kappa-scoring")
BUNDLE = os.environ.get("KAPPA_SCORING_BUNDLE", "IrisClassifier")
LABELS = os.environ.get("KAPPA_SCORING_LABELS") or None

with DAG(
    dag_id="kappa_daily_scoring",
    description="Score the day's partition with the newest ready bundle, then check row counts",
    schedule="@daily",
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    default_args={
        "retries": int(os.environ.get("KAPPA_SCORING_RETRIES", "2")),
        "retry_delay": timedelta(minutes=5),
    },
    tags=["kappa", "scoring"],
) as dag:
    wait_for_bundle = KappaBundleSensor(
        task_id="wait_for_bundle",
        name=BUNDLE,
        labels=LABELS,
        poke_interval=60,
        timeout=6 * 3600,
        mode="reschedule",
    )
    score = KappaScoreOperator(
        task_id="score",
        bundle="{{ ti.xcom_pull(task_ids='wait_for_bundle') }}",
        api="predict",
        input_path=ROOT + "/input/date={{ ds }}/",
        output_path=ROOT + "/scores/date={{ ds }}/",
        engine=os.environ.get("KAPPA_SCORING_ENGINE", "local"),
        engine_conf={"workers": int(os.environ.get("KAPPA_SCORING_WORKERS", "1"))},
        max_error_rate=0.01,
    )

    @task
    def validate_counts(report: dict[str, Any], ds: str | None = None) -> dict[str, Any]:
        """Rows in = rows out + rows in error, and the input, output and errors files hold those rows."""
        return validate_report(report, input_path=f"{ROOT}/input/date={ds}/")

    wait_for_bundle >> score
    validate_counts(score.output)
