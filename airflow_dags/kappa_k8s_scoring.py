"""Daily batch scoring on Kubernetes: the bundle's image runs as a Job, through Airflow's Kubernetes
provider (``KubernetesJobOperator``).

The Job comes from ``kappa k8s NAME:VERSION --image IMAGE -d DIR`` (``DIR/batch-job.yaml``, at
``$KAPPA_K8S_JOB_FILE``); the task scores the day's partition
``$KAPPA_SCORING_ROOT/input/date=YYYY-MM-DD/`` into ``.../scores/date=YYYY-MM-DD/`` (an object-store
URL the pods can reach, e.g. ``s3://bucket/scoring``) in namespace ``$KAPPA_K8S_NAMESPACE``.
``--resume`` keeps the shards a failed attempt finished.
"""

from __future__ import annotations

import os
from datetime import datetime, timedelta

from airflow.providers.cncf.kubernetes.operators.job import KubernetesJobOperator
from airflow.sdk import DAG

JOB_FILE = os.environ.get("KAPPA_K8S_JOB_FILE", "/opt/airflow/kappa/batch-job.yaml")
NAMESPACE = os.environ.get("KAPPA_K8S_NAMESPACE", "default")
ROOT = os.environ.get("KAPPA_SCORING_ROOT", "s3://kappa-scoring")
API = os.environ.get("KAPPA_SCORING_API", "predict")

with DAG(
    dag_id="kappa_k8s_scoring",
    description="Score the day's partition with the bundle's image as a Kubernetes Job",
    schedule="@daily",
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    default_args={"retries": 1, "retry_delay": timedelta(minutes=5)},
    tags=["kappa", "scoring", "kubernetes"],
) as dag:
    score = KubernetesJobOperator(
        task_id="score",
        job_template_file=JOB_FILE,
        namespace=NAMESPACE,
        base_container_name="kappa",  # the container of the Job `kappa k8s` writes
        arguments=[
            "kappa",
            "run",
            "/bundle",
            API,
            "--input-file",
            ROOT + "/input/date={{ ds }}/",
            "--output-file",
            ROOT + "/scores/date={{ ds }}/",
            "--resume",
        ],  # fmt: skip
        wait_until_job_complete=True,
        get_logs=True,
    )
