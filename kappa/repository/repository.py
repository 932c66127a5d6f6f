"""The repository: bundle files (fsspec) plus their metadata rows (SQLAlchemy)."""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kappa.bundle.version import new_version, validate_version
from kappa.errors import BundleError, RepositoryError
from kappa.repository import files
from kappa.repository.labels import validate_labels
from kappa.repository.metadata import MetadataStore
from kappa.repository.reference import BundleRef, parse_ref

if TYPE_CHECKING:
    from kappa.bundle.manifest import Manifest
    from kappa.repository.metadata import BundleRecord
    from kappa.service import BentoService
    from kappa.settings import KappaSettings

log = logging.getLogger(__name__)


def summary(manifest: Manifest) -> dict[str, Any]:
    """What ``kappa list`` shows, stored beside the row so listing never reads files."""
    return {
        "apis": [f"{a.name}<{a.input_type}>" for a in manifest.apis],
        "artifacts": [f"{a.name}<{a.type}>" for a in manifest.artifacts],
    }


class Repository:
    def __init__(self, settings: KappaSettings) -> None:
        self.settings = settings
        self.base_url = settings.base_url.rstrip("/")
        self.metadata = MetadataStore(settings.db_url)

    def location(self, name: str, version: str) -> str:
        return f"{self.base_url}/{name}/{version}"

    def save(
        self, service: BentoService, labels: Mapping[str, str] | None = None, version: str | None = None
    ) -> str:
        """Store a new version; the row turns ready only once every file is in place."""
        from kappa.bundle.save import save_to_dir

        clean = validate_labels(labels)
        explicit = version is not None
        version = validate_version(version) if version is not None else new_version()
        for _attempt in range(5):
            uri = self.location(service.name, version)
            try:
                self.metadata.add_pending(service.name, version, uri, clean)
                break
            except RepositoryError:
                if explicit:
                    raise
                version = new_version()
        else:  # pragma: no cover - 32 random bits collided five times
            raise RepositoryError(f"could not allocate a new version for {service.name}")
        try:
            if files.is_local(uri):
                save_to_dir(service, files.local_part(uri), version=version, labels=clean)
            else:
                with tempfile.TemporaryDirectory(prefix="kappa-save-") as tmp:
                    staged = Path(tmp) / version
                    save_to_dir(service, staged, version=version, labels=clean)
                    files.upload(staged, uri)
            manifest = service.manifest
            assert manifest is not None
            self.metadata.mark_ready(
                service.name, version, manifest.digest, summary(manifest), manifest.to_dict()
            )
        except BaseException:
            self.metadata.remove(service.name, version)
            if not explicit or files.is_local(uri):
                files.remove(uri) if not files.is_local(uri) else None
            raise
        service._bundle_path = uri
        log.info("saved %s:%s to %s", service.name, version, uri)
        return uri

    def get(self, ref: str | BundleRef) -> BundleRecord:
        parsed = parse_ref(ref) if isinstance(ref, str) else ref
        record = self.metadata.get(parsed.name, None if parsed.is_latest else parsed.version)
        if record is None:
            known = self.metadata.list(parsed.name)
            hint = (
                f"{parsed.name} has versions {[r.version for r in known[:5]]}"
                if known
                else f"no bundle named {parsed.name} is in the repository {self.base_url}"
            )
            raise BundleError(f"bundle {parsed} not found: {hint}; see `kappa list`")
        return record

    def local_path(self, ref: str | BundleRef) -> Path:
        """A local folder holding the bundle (downloaded into the cache when remote)."""
        record = self.get(ref)
        if files.is_local(record.uri):
            return files.local_part(record.uri)
        return files.fetch_bundle(record.uri)
