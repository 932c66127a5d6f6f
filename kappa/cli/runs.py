"""``kappa runs list|get``: which bundle version scored which input into which output."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import click

from kappa.cli._common import Environment, common_options, handles_errors, iso_time, pass_env

if TYPE_CHECKING:
    from kappa.repository.records import RunRecord


@click.group("runs")
def runs_group() -> None:
    """Scoring runs: which bundle version scored which input into which output."""


RUN_COLUMNS = (
    "RUN_ID",
    "BUNDLE",
    "API",
    "ENGINE",
    "STATUS",
    "ROWS_IN",
    "ERRORS",
    "STARTED",
    "SECONDS",
    "OUTPUT",
)


def _repository_runs(env: Environment) -> Any:
    from kappa.errors import RegistryUnavailable
    from kappa.repository.lineage import flush, outbox

    settings = env.settings()
    repository = env.repository()
    if settings.gamma_url:
        try:
            flush(repository, outbox(settings))  # reports queued while the registry was down
        except RegistryUnavailable:
            pass  # the listing below says so
    return repository.runs()


@runs_group.command("list")
@click.argument("name", required=False)
@click.option("--version", "version", help="Only runs of this version of NAME.")
@click.option("--limit", type=click.IntRange(1, 1000), default=50, show_default=True)
@click.option("--offset", type=click.IntRange(min=0), default=0, show_default=True)
@common_options
@pass_env
@handles_errors
def runs_list(env: Environment, name: str | None, version: str | None, limit: int, offset: int) -> None:
    """List scoring runs, newest first (of the service NAME when given)."""
    from kappa.bundle.version import validate_name

    records = _repository_runs(env).list(validate_name(name) if name else None, version, limit, offset)
    rows = [_row(r) for r in records]
    env.emit([r.report for r in records], RUN_COLUMNS, rows)


def _row(record: RunRecord) -> tuple[str, ...]:
    r = record.report
    return (
        record.run_id,
        record.tag,
        str(r.get("api", "")),
        str(r.get("engine", "")),
        str(r.get("status", ""))[:40],
        str(r.get("rows_in", "")),
        str(r.get("rows_error", "")),
        iso_time(r.get("started_at")),
        str(r.get("seconds", "")),
        str(r.get("output") or ""),
    )


@runs_group.command("get")
@click.argument("run_id")
@common_options
@pass_env
@handles_errors
def runs_get(env: Environment, run_id: str) -> None:
    """Show one scoring run's whole report."""
    record = _repository_runs(env).get(run_id)
    if env.output == "table":
        env.output = "yaml"
    env.emit(record.report)
