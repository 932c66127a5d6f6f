"""``kappa info``: version, settings (and where they come from), repository size."""

from __future__ import annotations

import platform

import click

from kappa._version import __version__
from kappa.cli._common import Environment, common_options, handles_errors, pass_env


@click.command()
@common_options
@pass_env
@handles_errors
def info(env: Environment) -> None:
    """Show Kappa's version and repository settings."""
    from kappa.settings import redact

    settings = env.settings()
    repo = env.repository()
    data = {
        "kappa_version": __version__,
        "python": platform.python_version(),
        "home": str(settings.home),
        "db_url": redact(settings.db_url),
        "db_url_source": settings.sources["db_url"],
        "base_url": settings.base_url,
        "base_url_source": settings.sources["base_url"],
        "bundles": repo.count()["ready"],
    }
    if settings.gamma_url:  # the registry server holds the repository; the settings above are unused
        data["gamma_url"] = settings.gamma_url
        data["gamma_url_source"] = settings.sources["gamma_url"]
    env.emit(data, ("KEY", "VALUE"), [(k, str(v)) for k, v in data.items()])
