"""What a scoring run is asked to do, and what it reports back."""

from __future__ import annotations

import secrets
import time
from dataclasses import asdict, dataclass, field
from typing import Any

DEFAULT_BATCH_SIZE = 65536


def error_rate_limit(given: float | None) -> float:
    """``--max-error-rate`` when given, else the ``run.max_error_rate`` setting (default 0.5)."""
    if given is not None:
        return given
    from kappa.settings import KappaSettings

    return KappaSettings.load().run_max_error_rate


@dataclass(frozen=True)
class ScoreJob:
    bundle: str
    api: str
    input_text: str | None = None
    input_file: str | None = None
    input_format: str | None = None
    output_file: str | None = None
    output_format: str | None = None
    errors_file: str | None = None
    id_column: str | None = None
    batch_size: int = DEFAULT_BATCH_SIZE
    workers: int | None = 1  # None: auto, from the cores and the input's shards (the CLI's default)
    threads_per_worker: int | None = None  # None: setting run.threads_per_worker, else cores // workers
    max_error_rate: float | None = None
    resume: bool = False
    overwrite: bool = False
    report_file: str | None = None
    progress: bool | None = None  # None: a bar on a terminal, log lines otherwise


@dataclass
class Report:
    bundle: str
    digest: str
    api: str
    engine: str = "local"
    input: str = ""
    output: str | None = None
    errors_file: str | None = None
    rows_in: int = 0
    rows_out: int = 0
    rows_error: int = 0
    shards: int = 0
    shards_resumed: int = 0
    workers: int = 1
    threads_per_worker: int | None = None  # BLAS/OpenMP threads of each scoring process
    seconds: float = 0.0
    rows_per_second: float = 0.0
    error_rate: float = 0.0
    status: str = "running"
    run_id: str = field(
        default_factory=lambda: f"run-{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(4)}"
    )
    started_at: float = field(default_factory=time.time)  # seconds since the epoch
    finished_at: float = 0.0
    airflow_dag_id: str | None = None
    airflow_run_id: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def add(self, rows_in: int, rows_out: int, rows_error: int) -> None:
        self.rows_in += rows_in
        self.rows_out += rows_out
        self.rows_error += rows_error

    def finish(self, seconds: float, max_error_rate: float | None) -> None:
        self.finished_at = time.time()
        self.seconds = round(seconds, 3)
        self.rows_per_second = round(self.rows_in / seconds, 1) if seconds > 0 else 0.0
        self.error_rate = round(self.rows_error / self.rows_in, 6) if self.rows_in else 0.0
        over = max_error_rate is not None and self.rows_in and self.rows_error / self.rows_in > max_error_rate
        self.status = "failed: error rate over --max-error-rate" if over else "succeeded"

    def fail(self, reason: str) -> None:
        """The run stopped on an error before it finished."""
        self.finished_at = time.time()
        self.seconds = round(self.finished_at - self.started_at, 3)
        self.status = f"failed: {reason}"[:256]

    def publish(self) -> None:
        """Record the run in the repository or registry (lineage); never raises."""
        from kappa.repository.lineage import airflow_context, record_run

        for key, value in airflow_context().items():
            setattr(self, key, value)
        record_run(self.to_dict())

    @property
    def succeeded(self) -> bool:
        return self.status == "succeeded"

    def write(self, url: str) -> None:
        """Write the report as JSON to a local path or fsspec URL."""
        import json

        from kappa_batch.io import filesystem

        fs, path = filesystem(url)
        fs.pipe_file(path, json.dumps(self.to_dict(), indent=2).encode())

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        if not data["extra"]:
            data.pop("extra")
        return data
