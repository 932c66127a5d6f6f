"""Every scoring run's report goes to the repository (``kappa runs list``), whatever the engine.

A run never fails because of this: when the registry server cannot be reached the report
waits in ``$KAPPA_HOME/gamma/outbox`` and is sent with the next report (or by
``kappa runs list``), and the run logs one warning.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kappa.errors import KappaError, RegistryUnavailable

if TYPE_CHECKING:
    from kappa.repository.remote import RemoteRepository
    from kappa.repository.repository import Repository
    from kappa.settings import KappaSettings

log = logging.getLogger(__name__)
# Where Airflow says which DAG run a task belongs to (it exports these to the task's process).
AIRFLOW_VARS = {"airflow_dag_id": "AIRFLOW_CTX_DAG_ID", "airflow_run_id": "AIRFLOW_CTX_DAG_RUN_ID"}


def airflow_context(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    environ = os.environ if environ is None else environ
    return {key: environ[var] for key, var in AIRFLOW_VARS.items() if environ.get(var)}


def outbox(settings: KappaSettings) -> Path:
    return settings.home / "gamma" / "outbox"


def record_run(report: Mapping[str, Any], settings: KappaSettings | None = None) -> bool:
    """Send ``report`` to the repository; True when it (and any queued before it) arrived."""
    from kappa.repository import open_repository
    from kappa.settings import KappaSettings

    try:
        settings = settings or KappaSettings.load()
        repository = open_repository(settings)
    except KappaError as exc:
        log.warning("the run report was not recorded: %s", exc)
        return False
    if not settings.gamma_url:
        try:
            repository.record_run(report)
            return True
        except Exception as exc:  # a run's lineage never fails the run
            log.warning("the run report was not recorded in %s: %s", settings.db_url, exc)
            return False
    box = outbox(settings)
    try:
        flush(repository, box)
        repository.record_run(report)
        return True
    except RegistryUnavailable as exc:
        try:
            path = _queue(box, report)
        except OSError as error:
            log.warning("%s; the run report is lost too: cannot queue it in %s: %s", exc, box, error)
        else:
            log.warning("%s; the run report waits in %s and goes with the next one", exc, path)
    except KappaError as exc:
        log.warning("the registry did not record the run report: %s", exc)
    except Exception as exc:  # noqa: BLE001 - a run's lineage never fails the run
        log.warning("the run report was not recorded: %s: %s", type(exc).__name__, exc)
    return False


def flush(repository: Repository | RemoteRepository, box: Path) -> int:
    """Send the queued reports, oldest first; stops (raising) at the first the registry cannot take."""
    if not box.is_dir():
        return 0
    sent = 0
    for path in sorted(box.glob("*.json")):  # run ids start with their time: oldest first
        try:
            report = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            continue  # another run on this machine sent it first
        except (OSError, ValueError):
            _set_aside(path, ".unreadable")
            continue
        try:
            repository.record_run(report)
        except RegistryUnavailable:
            raise
        except KappaError as exc:
            log.warning("the registry refused the queued run report %s: %s", path.name, exc)
            _set_aside(path, ".refused")
            continue
        path.unlink(missing_ok=True)
        sent += 1
    return sent


def _set_aside(path: Path, suffix: str) -> None:
    try:
        path.replace(path.with_suffix(suffix))
    except OSError:
        pass  # another run on this machine moved it first


def _queue(box: Path, report: Mapping[str, Any]) -> Path:
    box.mkdir(parents=True, exist_ok=True)
    path = box / f"{report.get('run_id', 'run')}.json"
    partial = path.with_suffix(".partial")
    partial.write_text(json.dumps(dict(report), default=str), encoding="utf-8")
    partial.replace(path)
    return path
