"""Where bundles live: files under an fsspec base URL, metadata in a SQL database."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from kappa.repository.repository import Repository
    from kappa.settings import KappaSettings


def open_repository(settings: KappaSettings | None = None) -> Repository:
    """The repository described by ``settings`` (loaded from config and environment if omitted)."""
    from kappa.repository.repository import Repository
    from kappa.settings import KappaSettings

    return Repository(settings or KappaSettings.load())
