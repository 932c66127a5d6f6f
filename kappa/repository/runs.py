"""Scoring-run lineage: which bundle version scored which input into which output.

One row per run, in the repository's database: the registry server stores the reports
its clients post, and a laptop without a registry stores its own.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa

from kappa.errors import InputError, RunConflict, RunNotFound
from kappa.repository.database import Database
from kappa.repository.records import RunRecord

_meta = sa.MetaData()
runs = sa.Table(
    "kappa_runs",
    _meta,
    sa.Column("run_id", sa.String(64), primary_key=True),
    sa.Column("name", sa.String(128), nullable=False),
    sa.Column("version", sa.String(128), nullable=False),
    sa.Column("digest", sa.String(80)),
    sa.Column("api", sa.String(128)),
    sa.Column("engine", sa.String(32)),
    sa.Column("status", sa.String(256)),
    sa.Column("input", sa.Text),
    sa.Column("output", sa.Text),
    sa.Column("rows_in", sa.BigInteger),
    sa.Column("rows_out", sa.BigInteger),
    sa.Column("rows_error", sa.BigInteger),
    sa.Column("started_at", sa.Float),
    sa.Column("finished_at", sa.Float),
    sa.Column("report", sa.Text, nullable=False),
    sa.Index("ix_kappa_runs_name_started", "name", "started_at"),
)
RUN_ID = re.compile(r"[A-Za-z0-9_.-]{8,64}")  # whole string: fullmatch
# What a posted report must say, and of what type (the rest is kept as it came).
REQUIRED: dict[str, type | tuple[type, ...]] = {
    "run_id": str,
    "bundle": str,
    "api": str,
    "engine": str,
    "status": str,
    "rows_in": int,
    "rows_out": int,
    "rows_error": int,
    "started_at": (int, float),
    "finished_at": (int, float),
}


# What other fields must be when present: text, or a number (the rest is kept as it came).
OPTIONAL: dict[str, type | tuple[type, ...]] = {
    "digest": str,
    "input": str,
    "output": str,
    "errors_file": str,
    "airflow_dag_id": str,
    "airflow_run_id": str,
    "seconds": (int, float),
    "rows_per_second": (int, float),
    "error_rate": (int, float),
    "shards": int,
    "shards_resumed": int,
    "workers": int,
}
BIGGEST = 2**62  # counts and times beyond this are not real


def _kind_name(kind: type | tuple[type, ...]) -> str:
    if isinstance(kind, tuple):
        return "number"
    return {"str": "string", "int": "whole number"}.get(kind.__name__, kind.__name__)


def _check_value(key: str, value: Any, kind: type | tuple[type, ...]) -> None:
    if not isinstance(value, kind) or isinstance(value, bool):
        raise InputError(f"the run report's {key!r} is missing or not a {_kind_name(kind)}")
    if isinstance(value, int | float) and not (math.isfinite(value) and abs(value) < BIGGEST):
        raise InputError(f"the run report's {key!r} is out of range: {value!r}")
    if isinstance(value, str) and len(value) > 4096:
        raise InputError(f"the run report's {key!r} is longer than 4096 characters")


def check_report(report: Any) -> dict[str, Any]:
    """``report`` if it is a scoring-run report this store can keep; else an InputError saying why."""
    if not isinstance(report, Mapping):
        raise InputError("a run report is a JSON object")
    for key, kind in REQUIRED.items():
        _check_value(key, report.get(key), kind)
    for key, kind in OPTIONAL.items():
        if report.get(key) is not None:
            _check_value(key, report[key], kind)
    if not RUN_ID.fullmatch(report["run_id"]):
        raise InputError("run_id must be 8-64 letters, digits, '_', '.' or '-'")
    from kappa.repository.reference import parse_ref

    ref = parse_ref(report["bundle"])
    if ref.is_latest:
        raise InputError(f"a run report names the exact bundle version it used, not {ref}")
    try:
        size = len(json.dumps(report, allow_nan=False))
    except ValueError:
        raise InputError("a run report holds no NaN or infinite numbers") from None
    if size > 1_000_000:
        raise InputError("a run report is at most 1 MB of JSON")
    return dict(report)


class RunStore:
    """Scoring runs' reports; every call rides out a server restart of up to ``reconnect_seconds``
    (see :class:`Database`)."""

    def __init__(self, url: str, reconnect_seconds: float = 0.0) -> None:
        self.database = Database(url, _meta, reconnect_seconds)

    def add(self, report: Mapping[str, Any]) -> RunRecord:
        """Store a run's report; posting the same run again replaces it (a retried post)."""
        data = check_report(report)
        name, _, version = data["bundle"].partition(":")
        row = {
            "name": name,
            "version": version,
            "digest": data.get("digest"),
            "api": data["api"],
            "engine": data["engine"],
            "status": data["status"][:256],
            "input": str(data.get("input") or ""),
            "output": str(data.get("output") or ""),
            "rows_in": data["rows_in"],
            "rows_out": data["rows_out"],
            "rows_error": data["rows_error"],
            "started_at": float(data["started_at"]),
            "finished_at": float(data["finished_at"]),
            "report": json.dumps(data, sort_keys=True, default=str),
        }

        def store(conn: sa.Connection) -> None:
            done = conn.execute(
                runs.update()
                .where(runs.c.run_id == data["run_id"], runs.c.name == name, runs.c.version == version)
                .values(**row)
            )
            if done.rowcount == 0:
                try:
                    conn.execute(runs.insert().values(run_id=data["run_id"], **row))
                except sa.exc.IntegrityError:
                    raise RunConflict(
                        f"run {data['run_id']} is recorded for another bundle; a run's report is only ever "
                        "re-sent for its own bundle"
                    ) from None

        self.database.call(store, write=True)
        return RunRecord(data["run_id"], name, version, data)

    def get(self, run_id: str) -> RunRecord:
        query = sa.select(runs).where(runs.c.run_id == run_id)
        row = self.database.call(lambda conn: conn.execute(query).first())
        if row is None:
            raise RunNotFound(f"no scoring run {run_id!r} is recorded; `kappa runs list` shows them")
        return _record(row)

    def list(
        self, name: str | None = None, version: str | None = None, limit: int = 100, offset: int = 0
    ) -> list[RunRecord]:
        query = sa.select(runs)
        if name is not None:
            query = query.where(runs.c.name == name)
        if version is not None:
            query = query.where(runs.c.version == version)
        query = query.order_by(runs.c.started_at.desc(), runs.c.run_id).limit(limit).offset(offset)
        return self.database.call(lambda conn: [_record(row) for row in conn.execute(query)])


def _record(row: Any) -> RunRecord:
    return RunRecord(row.run_id, row.name, row.version, json.loads(row.report))
