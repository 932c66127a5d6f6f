"""The root ``kappa`` command: a lazy click group.

Subcommands are named here by dotted path, and packages above ``kappa``
(``kappa_batch`` for ``run``, ``kappa_online`` for ``serve``) plug theirs in
through the ``kappa.commands`` entry point group, so nothing imports upward and
``kappa --help`` imports no subcommand's dependencies.
"""

from __future__ import annotations

import importlib
import logging
from typing import Any

import click

from kappa._version import __version__
from kappa.cli._common import Environment, common_options

BUILTIN: dict[str, str] = {
    "info": "kappa.cli.info:info",
    "config": "kappa.cli.config:config_group",
    "list": "kappa.cli.repo:list_command",
    "get": "kappa.cli.repo:get_command",
    "delete": "kappa.cli.repo:delete_command",
    "gc": "kappa.cli.repo:gc_command",
    "retrieve": "kappa.cli.repo:retrieve_command",
    "import": "kappa.cli.repo:import_command",
    "export": "kappa.cli.repo:export_command",
    "containerize": "kappa.cli.deploy:containerize_command",
    "k8s": "kappa.cli.deploy:k8s_command",
    "pack-env": "kappa.cli.deploy:pack_env_command",
    "runs": "kappa.cli.runs:runs_group",
}
ENTRY_POINT_GROUP = "kappa.commands"


def _entry_points() -> dict[str, str]:
    from importlib.metadata import entry_points

    return {ep.name: ep.value for ep in entry_points(group=ENTRY_POINT_GROUP)}


class LazyGroup(click.Group):
    def _commands(self) -> dict[str, str]:
        return {**_entry_points(), **BUILTIN}

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*self._commands(), *super().list_commands(ctx)})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = self._commands().get(cmd_name)
        if target is None:
            return super().get_command(ctx, cmd_name)
        module_name, attr = target.split(":")
        command: Any = getattr(importlib.import_module(module_name), attr)
        return command if isinstance(command, click.Command) else None


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="kappa")
@click.option("--db-url", help="Metadata database (SQLAlchemy URL) for this call.")
@click.option("--base-url", help="Bundle files location (path or fsspec URL) for this call.")
@click.option("--gamma-url", help="The registry server (http://HOST:PORT) for this call.")
@common_options
@click.pass_context
def cli(ctx: click.Context, db_url: str | None, base_url: str | None, gamma_url: str | None) -> None:
    """Kappa: versioned model bundles, scored offline first."""
    env = ctx.ensure_object(Environment)
    if db_url:
        env.overrides["repository.db_url"] = db_url
    if base_url:
        env.overrides["repository.base_url"] = base_url
    if gamma_url:
        env.overrides["gamma_service.url"] = gamma_url
    if not (env.quiet or env.verbose):
        logging.basicConfig(level=logging.INFO, format="%(message)s")
        for chatty in ("botocore", "aiobotocore"):  # "Found credentials in environment variables."
            logging.getLogger(chatty).setLevel(logging.WARNING)
    if not env.verbose:
        logging.getLogger("asyncio").addFilter(_said_elsewhere)
    from kappa.redact import redact_logs

    redact_logs()


def _said_elsewhere(record: logging.LogRecord) -> bool:
    """Drop asyncio's "Task exception was never retrieved" for a store client's background task
    (aiohttp under s3fs): the command that used the store reports the failure in its own line."""
    from kappa.errors import is_store_error

    return not (record.exc_info and record.exc_info[1] is not None and is_store_error(record.exc_info[1]))


def main() -> None:
    import os

    os.umask(os.umask(0o022) | 0o022)  # what kappa writes is never group- or world-writable
    cli(prog_name="kappa")
