"""Where bundles live: files under an fsspec base URL, metadata in a SQL database; or, with
``gamma_service.url`` set, the registry server that holds both."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from kappa.repository.remote import RemoteRepository
    from kappa.repository.repository import Repository
    from kappa.settings import KappaSettings


def open_repository(settings: KappaSettings | None = None) -> Repository | RemoteRepository:
    """The repository described by ``settings`` (loaded from config and environment if omitted):
    the registry server's when ``gamma_service.url`` is set, else the database and files."""
    from kappa.settings import KappaSettings

    settings = settings or KappaSettings.load()
    if settings.gamma_url:
        from kappa.repository.remote import RemoteRepository

        return RemoteRepository(settings)
    from kappa.repository.repository import Repository

    return Repository(settings)
