"""Airflow 3: the example DAGs under real Airflow (SQLite metadata in a temporary AIRFLOW_HOME),
and ``KappaScoreOperator`` / ``KappaBundleSensor`` run directly."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

pytestmark = pytest.mark.airflow
ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
DATE = "2026-01-02"


@pytest.fixture(scope="module")
def registry(tmp_path_factory):
    """The DAGs' registry server: their sensor, operator and runs reach bundles through it."""
    from tests.servers import gamma_server

    with gamma_server(tmp_path_factory.mktemp("airflow-gamma")) as server:
        yield server


@pytest.fixture(scope="module")
def airflow_env(tmp_path_factory, registry):
    """An Airflow home with a migrated database, a registry server holding the iris bundle
    (Airflow's tasks hold its URL and a token, not a database), and data."""
    base = tmp_path_factory.mktemp("airflow")
    env = {
        **registry.client_env("write"),
        **os.environ,
        "AIRFLOW_HOME": str(base / "airflow"),
        "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "airflow_dags"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "KAPPA_HOME": str(base / "kappa-home"),
        "KAPPA_SCORING_ROOT": str(base / "data"),
        "KAPPA_SCORING_RETRIES": "0",
        "KAPPA_SPARK_MASTER": "local[2]",
        "SPARK_LOCAL_IP": "127.0.0.1",
        "PYSPARK_PYTHON": sys.executable,
    }
    migrate = subprocess.run([str(BIN / "airflow"), "db", "migrate"], env=env, capture_output=True, text=True)
    assert migrate.returncode == 0, migrate.stderr[-3000:]
    # `dags test` runs serialized DAGs; the DAG files do not change during the tests
    serialized = subprocess.run(
        [str(BIN / "airflow"), "dags", "reserialize"], env=env, capture_output=True, text=True
    )
    assert serialized.returncode == 0, serialized.stderr[-3000:]
    saved = subprocess.run(
        [sys.executable, "-m", "examples.iris.main"], env=env, cwd=ROOT, capture_output=True, text=True
    )
    assert saved.returncode == 0, saved.stderr
    return env


def _write_day(env: dict[str, str], frame: pd.DataFrame, date: str = DATE) -> Path:
    folder = Path(env["KAPPA_SCORING_ROOT"]) / "input" / f"date={date}"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    frame.to_parquet(folder / "part-0.parquet", index=False)
    return folder


def _iris(rows: int | None = None) -> pd.DataFrame:
    frame = pd.read_csv(ROOT / "examples" / "iris" / "iris.csv").drop(columns=["species"])
    return frame if rows is None else frame.iloc[:rows]


def _dags_test(env: dict[str, str], dag_id: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "airflow"), "dags", "test", dag_id, DATE],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


def _parts(folder: Path) -> pd.DataFrame:
    files = sorted(folder.rglob("part-*.parquet"))
    files = [
        f for f in files if not {"_kappa", "_errors", "_errors.parquet"} & set(f.relative_to(folder).parts)
    ]
    return pd.concat([pq.read_table(f).to_pandas() for f in files], ignore_index=True)


def _kappa_run(env: dict[str, str], source: Path, target: Path) -> pd.DataFrame:
    result = subprocess.run(
        [str(BIN / "kappa"), "run", "IrisClassifier:latest", "predict", "--input-file", str(source),
         "--output-file", str(target), "--overwrite"],
        env=env, capture_output=True, text=True,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return _parts(target).sort_values("_row").reset_index(drop=True)


def test_dagbag_has_no_import_errors(airflow_env):
    code = (
        "import json, sys\n"
        "from airflow.dag_processing.dagbag import DagBag\n"
        "bag = DagBag(dag_folder=sys.argv[1])\n"
        "errors = {k: str(v) for k, v in bag.import_errors.items()}\n"
        "print(json.dumps({'errors': errors, 'dags': sorted(bag.dag_ids)}))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code, str(ROOT / "airflow_dags")],
        env=airflow_env,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    found = json.loads(result.stdout.strip().splitlines()[-1])
    assert found["errors"] == {}
    assert found["dags"] == ["kappa_daily_scoring", "kappa_k8s_scoring", "kappa_spark_scoring"]


KUBECONFIG = """
apiVersion: v1
kind: Config
clusters: [{name: none, cluster: {server: "https://127.0.0.1:9"}}]
users: [{name: none, user: {token: none}}]
contexts: [{name: none, context: {cluster: none, user: none}}]
current-context: none
"""


def test_k8s_dag_builds_the_job_kappa_k8s_wrote(airflow_env, tmp_path):
    """No cluster here: the DAG's task builds its Job request (what it would submit) from the Job file
    `kappa k8s` wrote, with the day's input and output; the kubeconfig names a server never contacted."""
    manifests = tmp_path / "k8s"
    written = subprocess.run(
        [str(BIN / "kappa"), "k8s", "IrisClassifier:latest", "--image", "registry.example.com/iris:1",
         "-d", str(manifests)],
        env=airflow_env, capture_output=True, text=True,
    )  # fmt: skip
    assert written.returncode == 0, written.stderr
    (tmp_path / "kubeconfig").write_text(KUBECONFIG)
    env = {
        **airflow_env,
        "KUBECONFIG": str(tmp_path / "kubeconfig"),
        "KAPPA_K8S_JOB_FILE": str(manifests / "batch-job.yaml"),
        "KAPPA_K8S_NAMESPACE": "scoring",
        "KAPPA_SCORING_ROOT": "s3://bucket/scoring",
    }
    code = (
        "import json, sys\n"
        "from airflow.dag_processing.dagbag import DagBag\n"
        "task = DagBag(dag_folder=sys.argv[1]).get_dag('kappa_k8s_scoring').get_task('score')\n"
        "task.render_template_fields({'ds': sys.argv[2]})\n"
        "job = task.build_job_request_obj(None)\n"
        "(c,) = job.spec.template.spec.containers\n"
        "print(json.dumps({'args': c.args, 'image': c.image, 'namespace': job.metadata.namespace,\n"
        "    'backoff': job.spec.backoff_limit, 'user': c.security_context.run_as_user}))"
    )
    dags = str(ROOT / "airflow_dags")
    result = subprocess.run([sys.executable, "-c", code, dags, DATE], env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    job = json.loads(result.stdout.strip().splitlines()[-1])
    assert job["args"] == [
        "kappa", "run", "/bundle", "predict",
        "--input-file", f"s3://bucket/scoring/input/date={DATE}/",
        "--output-file", f"s3://bucket/scoring/scores/date={DATE}/", "--resume",
    ]  # fmt: skip
    assert job["image"] == "registry.example.com/iris:1" and job["namespace"] == "scoring"
    assert job["backoff"] == 2 and job["user"] == 10001  # from the Job file


def test_daily_dag_scores_the_day_and_a_rerun_replaces_it(airflow_env, tmp_path):
    source = _write_day(airflow_env, _iris())
    result = _dags_test(airflow_env, "kappa_daily_scoring")
    assert result.returncode == 0, (result.stdout + result.stderr)[-5000:]
    output = Path(airflow_env["KAPPA_SCORING_ROOT"]) / "scores" / f"date={DATE}"
    got = _parts(output).sort_values("_row").reset_index(drop=True)
    expected = _kappa_run(airflow_env, source, tmp_path / "reference")
    pd.testing.assert_frame_equal(got, expected)
    assert "Returned value was: {'rows_in': 150, 'rows_out': 150" in result.stdout + result.stderr
    # the registry recorded the DAG's run, with the DAG and its run id
    listed = subprocess.run(
        [str(BIN / "kappa"), "runs", "list", "IrisClassifier", "-o", "json"],
        env=airflow_env,
        capture_output=True,
    )
    runs = [r for r in json.loads(listed.stdout) if r.get("airflow_dag_id") == "kappa_daily_scoring"]
    assert len(runs) == 1 and runs[0]["airflow_run_id"] and runs[0]["rows_in"] == 150
    assert runs[0]["output"].endswith(f"scores/date={DATE}")
    # the day's data is re-delivered smaller: re-running the date replaces its scores
    source = _write_day(airflow_env, _iris(100))
    again = _dags_test(airflow_env, "kappa_daily_scoring")
    assert again.returncode == 0, (again.stdout + again.stderr)[-5000:]
    got = _parts(output).sort_values("_row").reset_index(drop=True)
    assert len(got) == 100 and got["_row"].is_unique
    pd.testing.assert_frame_equal(got, _kappa_run(airflow_env, source, tmp_path / "reference"))


@pytest.mark.spark
@pytest.mark.slow
def test_spark_dag_runs_spark_jobs_score_py(airflow_env, tmp_path):
    source = _write_day(airflow_env, _iris())
    result = _dags_test(airflow_env, "kappa_spark_scoring")
    assert result.returncode == 0, (result.stdout + result.stderr)[-5000:]
    assert "spark_jobs/score.py" in result.stdout + result.stderr
    got = _parts(Path(airflow_env["KAPPA_SCORING_ROOT"]) / "spark-scores" / f"date={DATE}")
    expected = _kappa_run(airflow_env, source, tmp_path / "reference")
    assert len(got) == 150
    assert sorted(got["prediction"].tolist()) == sorted(expected["prediction"].tolist())


# -- the operator and the sensor, run directly ----------------------------------------------------------

SLOW_SERVICE = """
import time

import kappa
from kappa.adapters import DataframeInput
from kappa.frameworks.sklearn import SklearnModelArtifact

@kappa.artifacts([SklearnModelArtifact("model")])
class SlowIris(kappa.BentoService):
    @kappa.api(input=DataframeInput(columns=["a", "b", "c", "d"]), batch=True)
    def predict(self, df):
        time.sleep(0.3)
        return self.artifacts.model.predict(df.to_numpy())
"""


@pytest.fixture
def slow_versions(make_module, iris):
    """Two saved versions of SlowIris (v2 is latest) and a 20-shard input for them."""
    module = make_module(SLOW_SERVICE)
    module.SlowIris().pack("model", iris[2]).save(labels={"stage": "prod"}, version="v1")
    time.sleep(0.05)  # `latest` is the newest
    module.SlowIris().pack("model", iris[2]).save(labels={"stage": "dev"}, version="v2")
    return "SlowIris:v1", "SlowIris:v2"


def _slow_input(iris, folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    frame = pd.DataFrame(iris[0].tolist() * 2, columns=["a", "b", "c", "d"])
    frame.to_parquet(folder / "in.parquet", row_group_size=15)
    return folder / "in.parquet"


def test_operator_does_nothing_heavy_when_a_dag_is_parsed():
    code = (
        "import sys\n"
        "from kappa_batch.airflow import KappaScoreOperator\n"
        "KappaScoreOperator(task_id='t', bundle='Nope:latest', input_path='in/', output_path='out/')\n"
        "print(sorted(m for m in ('pandas', 'pyarrow', 'numpy', 'sklearn', 'kappa_batch.runner', "
        "'kappa.repository') if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-P", "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_operator_resolves_latest_once_and_a_retry_keeps_the_version(slow_versions, iris, tmp_path):
    from kappa.threads import available_cores
    from kappa_batch.airflow import KappaScoreOperator

    first, second = slow_versions
    source = _slow_input(iris, tmp_path)
    output = tmp_path / "out"
    pinned = KappaScoreOperator(
        task_id="first",
        bundle=first,
        input_path=str(source),
        output_path=str(output),
        engine_conf={"batch_size": 15, "threads_per_worker": 1},
        max_error_rate=0.0,
    )
    report = pinned.execute({})
    assert report["bundle"] == first and report["rows_in"] == 300 and report["rows_out"] == 300
    assert report["threads_per_worker"] == 1  # the child `kappa run` held its workers to it
    # an attempt that died before committing: its run state records the version it used
    (output / "_SUCCESS").unlink()
    (output / "_kappa" / "manifest.json").unlink()
    retry = KappaScoreOperator(
        task_id="retry",
        bundle="SlowIris:latest",
        input_path=str(source),
        output_path=str(output),
        engine_conf={"batch_size": 15},
    )
    report = retry.execute({})
    assert report["bundle"] == first  # not the newer `latest`
    assert report["threads_per_worker"] == max(1, available_cores() // report["workers"])  # the default share
    assert report["shards_resumed"] == report["shards"] == 20
    # a re-run over a complete output resolves `latest` again and replaces the output
    report = retry.execute({})
    assert report["bundle"] == second and report["shards_resumed"] == 0
    assert len(pq.read_table(output).to_pandas()) == 300


def test_on_kill_stops_the_running_job_and_the_retry_resumes_it_exactly_once(
    slow_versions, make_module, iris, tmp_path
):
    """Also issue 21's Airflow fault (bench/RELIABILITY.md): the task killed mid-run, a newer
    version saved meanwhile, and the retry resumes with the version the killed run recorded."""
    from kappa.errors import KappaError
    from kappa_batch.airflow import KappaScoreOperator

    source = _slow_input(iris, tmp_path)
    output = tmp_path / "out"
    operator = KappaScoreOperator(
        task_id="killed",
        bundle="SlowIris:latest",
        input_path=str(source),
        output_path=str(output),
        engine_conf={"batch_size": 15},
    )
    failure: list[BaseException] = []

    def work() -> None:
        try:
            operator.execute({})
        except BaseException as exc:  # noqa: BLE001 - the test inspects it
            failure.append(exc)

    thread = threading.Thread(target=work)
    thread.start()
    deadline = time.monotonic() + 60
    while not list(output.glob("part-*.parquet")):
        assert thread.is_alive() and time.monotonic() < deadline
        time.sleep(0.05)
    process = operator._process
    assert process is not None
    operator.on_kill()
    thread.join(timeout=30)
    assert not thread.is_alive()
    assert process.poll() is not None
    assert failure and isinstance(failure[0], KappaError) and "exit code" in str(failure[0])
    killed = len(list(output.glob("part-*.parquet")))
    assert killed < 20 and not (output / "_SUCCESS").exists()
    time.sleep(0.05)
    make_module(SLOW_SERVICE).SlowIris().pack("model", iris[2]).save(version="v3")  # the new `latest`
    retry = KappaScoreOperator(
        task_id="killed",
        bundle="SlowIris:latest",
        input_path=str(source),
        output_path=str(output),
        engine_conf={"batch_size": 15},
    )
    report = retry.execute({})
    assert report["bundle"] == slow_versions[1]  # what the killed attempt used, not v3
    assert report["status"] == "succeeded" and report["shards_resumed"] >= killed
    rows = pq.read_table(output).to_pandas()["_row"].tolist()
    assert sorted(rows) == list(range(300))  # every row exactly once


def test_bundle_sensor_waits_for_labels(slow_versions):
    from kappa_batch.airflow import KappaBundleSensor

    first, second = slow_versions
    assert KappaBundleSensor(task_id="any", name="SlowIris").poke({}).xcom_value == second
    assert (
        KappaBundleSensor(task_id="prod", name="SlowIris", labels="stage=prod").poke({}).xcom_value == first
    )
    assert KappaBundleSensor(task_id="none", name="SlowIris", labels="stage=gone").poke({}) is False
    assert KappaBundleSensor(task_id="other", name="Missing").poke({}) is False


def test_bad_operator_arguments_are_clear_errors():
    from kappa.errors import InputError
    from kappa_batch.airflow import KappaScoreOperator

    with pytest.raises(InputError, match="engine must be one of"):
        KappaScoreOperator(task_id="t", bundle="b", input_path="i", output_path="o", engine="ray")
    with pytest.raises(InputError, match="max_error_rate"):
        KappaScoreOperator(task_id="t", bundle="b", input_path="i", output_path="o", max_error_rate=2)
