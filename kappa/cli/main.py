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

BUILTIN: dict[str, str] = {
    "info": "kappa.cli.info:info",
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
@click.option("-q", "--quiet", is_flag=True, help="Only errors.")
@click.option("--verbose", is_flag=True, help="Debug logging.")
@click.pass_context
def cli(ctx: click.Context, quiet: bool, verbose: bool) -> None:
    """Kappa: versioned model bundles, scored offline first."""
    level = logging.ERROR if quiet else logging.DEBUG if verbose else logging.INFO
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")


def main() -> None:
    cli(prog_name="kappa")
