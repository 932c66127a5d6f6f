"""What every ``kappa`` subcommand shares: options, output formats, errors, settings."""

from __future__ import annotations

import functools
import json
import logging
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

import click

if TYPE_CHECKING:
    from kappa.repository.remote import RemoteRepository
    from kappa.repository.repository import Repository
    from kappa.settings import KappaSettings

F = TypeVar("F", bound=Callable[..., Any])
FORMATS = ("table", "json", "yaml")


@dataclass
class Environment:
    """The state object of a ``kappa`` invocation (``ctx.obj``)."""

    overrides: dict[str, str] = field(default_factory=dict)
    quiet: bool = False
    verbose: bool = False
    output: str = "table"

    def settings(self) -> KappaSettings:
        from kappa.settings import KappaSettings

        return KappaSettings.load(overrides=self.overrides)

    def repository(self) -> Repository | RemoteRepository:
        from kappa.repository import open_repository

        return open_repository(self.settings())

    def info(self, message: str) -> None:
        if not self.quiet:
            click.echo(message, err=True)

    def emit(
        self, data: Any, columns: Sequence[str] | None = None, rows: Sequence[Sequence[str]] = ()
    ) -> None:
        """Print ``data`` as JSON/YAML, or ``rows`` as a table when the format is ``table``."""
        if self.output == "json":
            click.echo(json.dumps(data, indent=2, default=str))
        elif self.output == "yaml":
            import yaml

            click.echo(yaml.safe_dump(data, sort_keys=False, allow_unicode=True).rstrip())
        elif columns is not None:
            click.echo(render_table(columns, rows))
        else:
            import yaml

            click.echo(yaml.safe_dump(data, sort_keys=False, allow_unicode=True).rstrip())


pass_env = click.make_pass_decorator(Environment, ensure=True)


def _configure_logging(env: Environment) -> None:
    level = logging.ERROR if env.quiet else logging.DEBUG if env.verbose else logging.WARNING
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s", force=True)
    from kappa.redact import redact_logs

    redact_logs()


def common_options(func: F) -> F:
    """``-q/--quiet``, ``--verbose`` and ``-o table|json|yaml`` on a subcommand."""

    def set_quiet(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
        if value:
            ctx.ensure_object(Environment).quiet = True
            _configure_logging(ctx.ensure_object(Environment))

    def set_verbose(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
        if value:
            ctx.ensure_object(Environment).verbose = True
            _configure_logging(ctx.ensure_object(Environment))

    def set_output(ctx: click.Context, _param: click.Parameter, value: str | None) -> None:
        if value:
            ctx.ensure_object(Environment).output = value

    options = [
        click.option(
            "-q", "--quiet", is_flag=True, expose_value=False, callback=set_quiet, help="Only errors."
        ),
        click.option(
            "--verbose", is_flag=True, expose_value=False, callback=set_verbose, help="Debug logging."
        ),
        click.option(
            "-o",
            "--output",
            type=click.Choice(FORMATS),
            expose_value=False,
            callback=set_output,
            help="Output format (default: table).",
        ),
    ]
    for option in reversed(options):
        func = option(func)
    return func


@contextmanager
def user_errors() -> Iterator[None]:
    """Turn Kappa's errors into one clean CLI error line (no traceback)."""
    from kappa.errors import KappaError, is_store_error, store_failure
    from kappa.redact import redact

    try:
        yield
    except KappaError as exc:
        raise click.ClickException(redact(str(exc))) from None
    except Exception as exc:  # a file or a store the command needed: one line, not a traceback
        if not is_store_error(exc):
            raise
        detail, filename = store_failure(exc)
        where = f" {filename!r}" if filename else ""
        raise click.ClickException(redact(f"cannot read or write{where}: {detail}")) from None


def handles_errors(func: F) -> F:
    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with user_errors():
            return func(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


def render_table(columns: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [len(c) for c in columns]
    for row in rows:
        widths = [max(w, len(cell)) for w, cell in zip(widths, row, strict=True)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)).rstrip()]
    lines += ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in rows]
    return "\n".join(lines)


def age(created_at: float, now: float | None = None) -> str:
    seconds = max(0, int((now or time.time()) - created_at))
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= size:
            count = seconds // size
            return f"{count} {unit}{'s' if count != 1 else ''}"
    return f"{seconds} second{'s' if seconds != 1 else ''}"


def exit_code_of(command: click.Command, args: list[str], prog_name: str | None = None) -> int:
    """Run ``command`` as a console script's body: its exit code, errors shown as one line."""
    try:
        command.main(args=args, prog_name=prog_name, standalone_mode=False)
    except click.exceptions.Abort:
        return 1
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    return 0


def iso_time(seconds: float | None) -> str:
    """Seconds since the epoch as an ISO 8601 UTC time, to the second."""
    from datetime import datetime, timezone

    return datetime.fromtimestamp(float(seconds or 0), timezone.utc).isoformat(timespec="seconds")
