"""The console script of a pip-installed bundle, named after its service.

It takes the ``kappa`` verbs with the bundle already chosen, as documented::

    IrisClassifier run predict --input '[[5.1, 3.5, 1.4, 0.2]]'
    IrisClassifier run predict --input-file ./data.csv
    IrisClassifier --info

(``IrisClassifier predict --input ...``, the form of earlier versions, still works.)
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path


def main(bundle_dir: str, argv: Sequence[str] | None = None) -> int:
    import sys

    import click

    from kappa.bundle.manifest import load_manifest
    from kappa.cli._common import exit_code_of
    from kappa.errors import KappaError
    from kappa_batch.cli import run_command

    args = list(sys.argv[1:] if argv is None else argv)
    try:
        manifest = load_manifest(Path(bundle_dir))
    except KappaError as exc:
        click.echo(f"Error: {exc}", err=True)
        return 1
    apis = [a.name for a in manifest.apis]
    if not args or args[0] in ("--info", "info"):
        click.echo(json.dumps({"name": manifest.name, "version": manifest.version, "apis": apis}, indent=2))
        return 0
    if args[0] in ("-h", "--help"):
        click.echo(
            f"Usage: {manifest.name} run API [OPTIONS]   (the options of `kappa run`; see `run API --help`)\n"
            f"       {manifest.name} --info\n\nAPIs: {', '.join(apis)}"
        )
        return 0
    if args[0] == "run":
        args = args[1:]
    elif args[0] not in apis:
        click.echo(
            f"Error: no command or API {args[0]!r}; try `{manifest.name} run {apis[0]} --help`", err=True
        )
        return 2
    return exit_code_of(run_command, [bundle_dir, *args], prog_name=f"{manifest.name} run")
