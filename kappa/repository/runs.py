"""Scoring-run lineage: which bundle version scored which input into which output.

One row per run, in the repository's database: the registry server stores the reports
its clients post, and a laptop without a registry stores its own.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa

from kappa.errors import InputError, RunNotFound
from kappa.repository.metadata import create_tables, shared_engine
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
RUN_ID = re.compile(r"^[A-Za-z0-9_.-]{8,64}$")
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


def check_report(report: Any) -> dict[str, Any]:
    """``report`` if it is a scoring-run report this store can keep; else an InputError saying why."""
    if not isinstance(report, Mapping):
        raise InputError("a run report is a JSON object")
    for key, kind in REQUIRED.items():
        value = report.get(key)
        if not isinstance(value, kind) or isinstance(value, bool):
            raise InputError(
                f"the run report's {key!r} is missing or not a {getattr(kind, '__name__', 'number')}"
            )
    if not RUN_ID.match(report["run_id"]):
        raise InputError("run_id must be 8-64 letters, digits, '_', '.' or '-'")
    from kappa.repository.reference import parse_ref

    ref = parse_ref(report["bundle"])
    if ref.is_latest:
        raise InputError(f"a run report names the exact bundle version it used, not {ref}")
    if len(json.dumps(report)) > 1_000_000:
        raise InputError("a run report is at most 1 MB of JSON")
    return dict(report)


class RunStore:
    def __init__(self, url: str) -> None:
        self.engine = shared_engine(url)
        create_tables(self.engine, _meta)

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
        with self.engine.begin() as conn:
            done = conn.execute(runs.update().where(runs.c.run_id == data["run_id"]).values(**row))
            if done.rowcount == 0:
                conn.execute(runs.insert().values(run_id=data["run_id"], **row))
        return RunRecord(data["run_id"], name, version, data)

    def get(self, run_id: str) -> RunRecord:
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(runs).where(runs.c.run_id == run_id)).first()
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
        with self.engine.connect() as conn:
            return [_record(row) for row in conn.execute(query)]


def _record(row: Any) -> RunRecord:
    return RunRecord(row.run_id, row.name, row.version, json.loads(row.report))
