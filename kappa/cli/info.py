"""``kappa info``: version, settings and where the repository is."""

from __future__ import annotations

import json

import click

from kappa._version import __version__


@click.command()
def info() -> None:
    """Show Kappa's version and repository settings."""
    from kappa.errors import KappaError
    from kappa.settings import KappaSettings

    try:
        settings = KappaSettings.load()
    except KappaError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(
        json.dumps(
            {
                "version": __version__,
                "home": str(settings.home),
                "db_url": settings.db_url,
                "base_url": settings.base_url,
            },
            indent=2,
        )
    )
