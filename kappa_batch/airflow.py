"""Airflow: ``KappaScoreOperator`` runs a scoring job, ``KappaBundleSensor`` waits for a bundle.

Airflow is imported only here (``airflow.sdk`` on Airflow 3; ``airflow.models`` /
``airflow.sensors.base`` on 2.10). Nothing heavy happens when a DAG file is parsed:
the operator's constructor only stores its arguments.

At run time the operator

1. resolves ``bundle`` (e.g. ``IrisClassifier:latest``) to one concrete version and
   logs it. A retry of an interrupted attempt finds the version that attempt recorded
   in the output's ``_kappa/run.json`` and scores with the same model;
2. runs the engine in a child process (``python -m kappa run`` for ``local`` and
   ``dask``, ``spark-submit spark_jobs/score.py`` for ``spark``), streaming its log
   lines into the task log; ``on_kill`` terminates that process and its children;
3. replaces a complete output of an earlier run of the same logical date (``--overwrite``)
   and resumes an incomplete one (``--resume``, with ``resume=True``), so a re-run never
   duplicates rows;
4. returns the run report (bundle version, rows in/out/error, output URL) as its XCom.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from kappa.errors import InputError, KappaError, missing_dependency

try:  # Airflow 3
    from airflow.sdk import BaseOperator, BaseSensorOperator
except ImportError:  # Airflow 2.10
    try:
        from airflow.models import BaseOperator  # type: ignore[no-redef]
        from airflow.sensors.base import BaseSensorOperator  # type: ignore[no-redef]
    except ImportError:
        raise missing_dependency("apache-airflow", "airflow", "the Airflow operator") from None

log = logging.getLogger(__name__)

ENGINES = ("local", "spark", "dask")
# engine_conf keys -> `kappa run` flags (local and dask engines)
_RUN_FLAGS = {
    "workers": "--workers",
    "threads_per_worker": "--threads-per-worker",
    "batch_size": "--batch-size",
    "format": "--format",
    "input_format": "--input-format",
    "id_column": "--id-column",
    "errors_path": "--errors-file",
    "scheduler": "--scheduler",
}
# engine_conf keys -> spark_jobs/score.py flags
_SPARK_FLAGS = {
    "format": "--format",
    "input_format": "--input-format",
    "id_column": "--id-column",
    "errors_path": "--errors-output",
    "env_check": "--env-check",
    "threads_per_worker": "--threads-per-worker",
}


def resolve_bundle(ref: str) -> str:
    """A concrete ``NAME:VERSION`` (or the path/URL as given) for ``ref``; ``latest`` is looked up now."""
    from kappa.bundle.load import looks_like_path

    if looks_like_path(ref):
        return ref
    from kappa.repository import open_repository

    return open_repository().get(ref).tag


def earlier_run(output_path: str, fmt: str | None = None) -> tuple[str, str | None]:
    """What an earlier run left at ``output_path``: ``"none"``, ``"complete"`` or ``"partial"``,
    and for a partial one the bundle version it scored with (from its ``_kappa/run.json``)."""
    from kappa_batch.shards import RUN_FILE, OutputSpec, ShardedOutput

    output = ShardedOutput(OutputSpec.parse(output_path, fmt, None))
    output.fs.invalidate_cache()
    if not output.exists():
        return "none", None
    if output.committed() is not None:
        return "complete", None
    run_file = f"{output.state}/{RUN_FILE}"
    if not output.fs.exists(run_file):
        return "partial", None
    bundle = json.loads(output.fs.cat_file(run_file)).get("bundle")
    return "partial", str(bundle) if bundle else None


class KappaScoreOperator(BaseOperator):  # type: ignore[misc]
    """Score ``input_path`` with ``api`` of ``bundle`` into ``output_path``.

    ``engine``: ``"local"`` (``kappa run``), ``"dask"`` (``engine_conf["scheduler"]``, or a
    local cluster of ``engine_conf["workers"]``) or ``"spark"`` (``spark-submit
    spark_jobs/score.py``; ``engine_conf`` keys ``master``, ``spark_submit``, ``script``,
    ``conf`` (a dict of ``--conf`` pairs)). Other ``engine_conf`` keys: ``workers`` (default
    ``auto``), ``threads_per_worker`` (BLAS/OpenMP threads of each scoring process),
    ``batch_size``, ``format``, ``input_format``, ``id_column``, ``errors_path``,
    ``env`` (extra environment variables for the job).
    """

    template_fields: Sequence[str] = ("bundle", "input_path", "output_path", "engine_conf")
    ui_color = "#c9e4f6"

    def __init__(
        self,
        *,
        bundle: str,
        input_path: str,
        output_path: str,
        api: str = "predict",
        engine: str = "local",
        engine_conf: Mapping[str, Any] | None = None,
        max_error_rate: float | None = None,
        resume: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if engine not in ENGINES:
            raise InputError(f"engine must be one of {ENGINES}, not {engine!r}")
        if max_error_rate is not None and not 0 <= max_error_rate <= 1:
            raise InputError(f"max_error_rate must be between 0 and 1, not {max_error_rate!r}")
        self.bundle, self.input_path, self.output_path = bundle, input_path, output_path
        self.api, self.engine, self.engine_conf = api, engine, dict(engine_conf or {})
        self.max_error_rate, self.resume = max_error_rate, resume
        self._process: subprocess.Popen[str] | None = None

    # -- run ------------------------------------------------------------------------------------
    def execute(self, context: Any) -> dict[str, Any]:
        fmt = self.engine_conf.get("format")
        state, recorded = earlier_run(self.output_path, fmt)
        if recorded is not None and self.resume:
            tag = recorded
            self.log.info("continuing the unfinished run into %s with %s", self.output_path, tag)
        else:
            tag = resolve_bundle(self.bundle)
            self.log.info("bundle %s resolves to %s", self.bundle, tag)
        with tempfile.TemporaryDirectory(prefix="kappa-airflow-") as tmp:
            report_file = str(Path(tmp) / "report.json")
            if self.engine == "spark":
                command = self._spark_command(tag, report_file)
            else:
                command = self._run_command(tag, report_file, state)
            self._run(command)
            report: dict[str, Any] = json.loads(Path(report_file).read_text())
        self.log.info(
            "%s: %s rows in, %s out, %s in error with %s; output %s",
            report.get("status"),
            report.get("rows_in"),
            report.get("rows_out"),
            report.get("rows_error"),
            report.get("bundle"),
            report.get("output"),
        )
        self._check_error_rate(report)
        return report

    def _run_command(self, tag: str, report_file: str, state: str) -> list[str]:
        # -P: the task's working directory must not shadow packages (a folder named "kappa")
        command = [sys.executable, "-P", "-m", "kappa", "run", tag, self.api, "--input-file", self.input_path]
        command += ["--output-file", self.output_path, "--report", report_file, "--no-progress"]
        command += ["--engine", self.engine]
        if state == "complete" or (state == "partial" and not self.resume):
            command.append("--overwrite")  # a re-run of this logical date replaces its output
        elif state == "partial":
            command.append("--resume")
        if self.max_error_rate is not None:
            command += ["--max-error-rate", str(self.max_error_rate)]
        return command + _flags(self.engine_conf, _RUN_FLAGS)

    def _spark_command(self, tag: str, report_file: str) -> list[str]:
        from kappa_batch.engines.spark_job import spark_submit

        conf = self.engine_conf
        command = [str(conf.get("spark_submit") or spark_submit())]
        if conf.get("master"):
            command += ["--master", str(conf["master"])]
        for key, value in dict(conf.get("conf") or {}).items():
            command += ["--conf", f"{key}={value}"]
        command += [str(conf.get("script") or _score_script())]
        command += [*_local_bundle(tag), "--api", self.api, "--input", self.input_path]
        command += ["--output", self.output_path, "--report", report_file]
        return command + _flags(conf, _SPARK_FLAGS)

    def _run(self, command: list[str]) -> None:
        env = {**os.environ, **{str(k): str(v) for k, v in dict(self.engine_conf.get("env") or {}).items()}}
        env.setdefault("PYSPARK_PYTHON", sys.executable)
        env.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
        self.log.info("running %s", " ".join(command))
        self._process = subprocess.Popen(
            command,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,  # its own process group, so on_kill reaches every child
        )
        assert self._process.stdout is not None
        for line in self._process.stdout:
            self.log.info("%s", line.rstrip())
        code = self._process.wait()
        self._process = None
        if code != 0:
            raise KappaError(f"the {self.engine} scoring job failed with exit code {code}; see the log above")

    def _check_error_rate(self, report: Mapping[str, Any]) -> None:
        if self.max_error_rate is None or not report.get("rows_in"):
            return
        rate = int(report.get("rows_error", 0)) / int(report["rows_in"])
        if rate > self.max_error_rate:
            raise KappaError(
                f"{report['rows_error']} of {report['rows_in']} rows failed ({rate:.2%}), more than "
                f"max_error_rate {self.max_error_rate:.2%}; see {report.get('errors_file')}"
            )

    def on_kill(self) -> None:
        process = self._process
        if process is None or process.poll() is not None:
            return
        self.log.info("stopping the scoring job (process group %d)", process.pid)
        try:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def _flags(conf: Mapping[str, Any], flags: Mapping[str, str]) -> list[str]:
    out: list[str] = []
    for key, flag in flags.items():
        if conf.get(key) is not None:
            out += [flag, str(conf[key])]
    return out


def _local_bundle(tag: str) -> list[str]:
    """spark-submit's driver needs no repository: pass the bundle's folder, and the digest the
    repository recorded for it, which the driver checks before it ships anything."""
    from kappa.bundle.load import locate

    located = locate(tag)
    digest = ["--bundle-digest", located.digest] if located.digest else []
    return ["--bundle", str(located.path), *digest]


def _score_script() -> str:
    """``spark_jobs/score.py`` beside the package (a source checkout), else a copy of its two lines."""
    here = Path(__file__).resolve().parents[1] / "spark_jobs" / "score.py"
    if here.exists():
        return str(here)
    script = Path(tempfile.mkdtemp(prefix="kappa-spark-job-")) / "score.py"
    script.write_text("import sys\nfrom kappa_batch.engines.spark_job import main\nsys.exit(main())\n")
    return str(script)


class KappaBundleSensor(BaseSensorOperator):  # type: ignore[misc]
    """Waits until bundle ``name`` has a ready version matching ``labels`` (a selector such as
    ``"stage=prod,team in (risk)"``); pushes the newest matching ``NAME:VERSION`` as its XCom."""

    template_fields: Sequence[str] = ("name", "labels")

    def __init__(self, *, name: str, labels: str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.name, self.labels = name, labels

    def poke(self, context: Any) -> Any:
        from kappa.repository import open_repository

        records = [r for r in open_repository().list(self.name, labels=self.labels) if r.status == "ready"]
        if not records:
            self.log.info("no ready bundle %s matching %r yet", self.name, self.labels or "")
            return False
        tag = records[0].tag
        self.log.info("found %s", tag)
        try:
            from airflow.sdk import PokeReturnValue
        except ImportError:
            from airflow.sensors.base import PokeReturnValue  # type: ignore[no-redef]
        return PokeReturnValue(is_done=True, xcom_value=tag)
