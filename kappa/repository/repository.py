"""The repository: bundle files (fsspec) plus their metadata rows (SQLAlchemy)."""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kappa.bundle.version import new_version, validate_name, validate_version
from kappa.errors import BundleError, RepositoryError
from kappa.repository import files
from kappa.repository.labels import validate_labels
from kappa.repository.metadata import DELETED, READY, BundleRecord, MetadataStore
from kappa.repository.reference import BundleRef, parse_ref
from kappa.repository.selectors import parse_selector

if TYPE_CHECKING:
    from kappa.bundle.manifest import Manifest
    from kappa.repository.archive import Limits
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
        return f"{self.base_url}/{validate_name(name)}/{validate_version(version)}"

    # -- writing -------------------------------------------------------------
    def _reserve(self, name: str, version: str | None, labels: dict[str, str]) -> tuple[str, str]:
        """Insert the ``pending`` row; a generated version is re-drawn on a clash."""
        explicit = version is not None
        current = validate_version(version) if version is not None else new_version()
        for _attempt in range(5):
            uri = self.location(name, current)
            try:
                self.metadata.add_pending(name, current, uri, labels)
                return current, uri
            except RepositoryError:
                if explicit:
                    raise
                current = new_version()
        raise RepositoryError(f"could not allocate a new version for {name}")  # pragma: no cover

    @contextmanager
    def _pending(self, name: str, version: str, uri: str) -> Iterator[None]:
        """Undo a pending row and its partial files if storing fails."""
        try:
            yield
        except BaseException:
            self.metadata.remove(name, version)
            if not files.is_local(uri):
                files.remove(uri)  # local saves stage and rename, so nothing partial is left
            raise

    def save(
        self, service: BentoService, labels: Mapping[str, str] | None = None, version: str | None = None
    ) -> str:
        """Store a new version; its row turns ``ready`` only once every file is in place."""
        from kappa.bundle.save import save_to_dir

        clean = validate_labels(labels)
        version, uri = self._reserve(service.name, version, clean)
        with self._pending(service.name, version, uri):
            if files.is_local(uri):
                save_to_dir(service, files.local_part(uri), version=version, labels=clean)
            else:
                with tempfile.TemporaryDirectory(prefix="kappa-save-") as tmp:
                    save_to_dir(service, Path(tmp) / version, version=version, labels=clean)
                    files.upload(Path(tmp) / version, uri)
            manifest = service.manifest
            assert manifest is not None
            self.metadata.mark_ready(
                service.name, version, manifest.digest, summary(manifest), manifest.to_dict()
            )
        service._bundle_path = uri
        log.info("saved %s:%s to %s", service.name, version, uri)
        return uri

    def limits(self) -> Limits:
        from kappa.repository.archive import Limits

        return Limits(
            self.settings.import_max_files, self.settings.import_max_bytes, self.settings.import_max_ratio
        )

    def _within_limits(self, source: str, manifest: Manifest) -> list[str]:
        """The paths a bundle is made of (its listed files and ``kappa.yml``), once its manifest
        is within the import limits."""
        from kappa.bundle.manifest import FILENAME

        entries = manifest.all_files
        self.limits().check(source, len(entries), sum(e.size for e in entries))
        return sorted({e.path for e in entries}) + [FILENAME]

    def add_folder(self, bundle_dir: Path) -> BundleRecord:
        """Store a complete, verified bundle folder under the name and version of its manifest.

        Only the files the manifest lists are stored: anything else in the folder is left out.
        """
        from kappa.bundle.integrity import check_digest, unlisted_files, verify
        from kappa.bundle.manifest import load_manifest

        manifest = load_manifest(bundle_dir)
        entries = manifest.all_files
        listed = self._within_limits(str(bundle_dir), manifest)
        check_digest(str(bundle_dir), entries, manifest.digest, None)
        verify(bundle_dir, entries)
        extra = unlisted_files(bundle_dir, entries)
        if extra:
            log.warning(
                "importing %s: left out %d file(s) its manifest does not list: %s",
                manifest.tag,
                len(extra),
                ", ".join(extra[:5]),
            )
        labels = validate_labels(manifest.labels)
        version, uri = self._reserve(manifest.name, manifest.version, labels)
        with self._pending(manifest.name, version, uri):
            if files.is_local(uri):
                files.copy_folder(bundle_dir, files.local_part(uri), only=listed)
            else:
                files.upload(bundle_dir, uri, only=listed)
            self.metadata.mark_ready(
                manifest.name, version, manifest.digest, summary(manifest), manifest.to_dict()
            )
        return self.get(f"{manifest.name}:{version}")

    def import_bundle(self, source: str) -> BundleRecord:
        """Import a bundle folder, a ``.tar.gz`` from ``export``, or either at an fsspec URL."""
        from kappa.repository.archive import extract_archive

        with tempfile.TemporaryDirectory(prefix="kappa-import-") as tmp:
            work = Path(tmp)
            if source.endswith((".tar.gz", ".tgz", ".tar")):
                archive = work / "bundle.tar.gz"
                if files.is_local(source):
                    archive = files.local_part(source)
                    if not archive.is_file():
                        raise RepositoryError(f"cannot import {source!r}: no such file")
                else:
                    fs, path = files.filesystem(source)
                    fs.get_file(path, str(archive))
                folder = extract_archive(archive, work / "extracted", self.limits())
            elif files.is_local(source):
                folder = files.local_part(source)
                if not folder.is_dir():
                    raise RepositoryError(f"cannot import {source!r}: no such folder or .tar.gz file")
            else:
                folder = self._download_listed(source, work / "downloaded")
            return self.add_folder(folder)

    def _download_listed(self, source: str, target: Path) -> Path:
        """A remote bundle folder's listed files, checked against the limits before any is fetched."""
        import yaml

        from kappa.bundle.manifest import FILENAME, Manifest

        fs, root = files.filesystem(source)
        where = f"{source.rstrip('/')}/{FILENAME}"
        try:
            manifest = Manifest.from_dict(
                yaml.safe_load(fs.cat_file(f"{root.rstrip('/')}/{FILENAME}")), where
            )
        except FileNotFoundError:
            raise RepositoryError(f"cannot import {source!r}: it has no {FILENAME}") from None
        except yaml.YAMLError as exc:
            raise RepositoryError(f"{where} is not valid YAML: {exc}") from None
        return files.download(source, target, only=self._within_limits(source, manifest))

    # -- reading -------------------------------------------------------------
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

    def list(
        self,
        name: str | None = None,
        labels: str | None = None,
        limit: int | None = None,
        offset: int = 0,
        order_by: str = "created_at",
        ascending: bool = False,
    ) -> list[BundleRecord]:
        selector = parse_selector(labels) if labels else None
        records = self.metadata.list(name, order_by=order_by, descending=not ascending)
        if selector is not None:
            records = [r for r in records if selector.matches(r.labels)]
        end = None if limit is None else offset + limit
        return records[offset:end]

    def manifest(self, ref: str | BundleRef) -> dict[str, Any]:
        record = self.get(ref)
        return self.metadata.manifest(record.name, record.version)

    def local_path(self, ref: str | BundleRef | BundleRecord) -> Path:
        """A local folder holding the bundle (downloaded into the cache when remote)."""
        record = ref if isinstance(ref, BundleRecord) else self.get(ref)
        if files.is_local(record.uri):
            return files.local_part(record.uri)
        return files.fetch_bundle(record.uri)

    def retrieve(self, ref: str, target_dir: Path) -> Path:
        """Copy a bundle into ``target_dir``, which must not exist."""
        if target_dir.exists():
            raise RepositoryError(
                f"{str(target_dir)!r} already exists; retrieve never overwrites, pick a new folder"
            )
        record = self.get(ref)
        target_dir.parent.mkdir(parents=True, exist_ok=True)
        if files.is_local(record.uri):
            files.copy_folder(files.local_part(record.uri), target_dir)
        else:
            files.download(record.uri, target_dir)
        return target_dir

    def export(self, ref: str, target: Path) -> Path:
        from kappa.repository.archive import write_archive

        if target.exists():
            raise RepositoryError(f"{str(target)!r} already exists; pick a new file name")
        record = self.get(ref)
        write_archive(self.local_path(record.tag), target, arcname=f"{record.name}-{record.version}")
        return target

    # -- deleting ------------------------------------------------------------
    def deletable(self, ref: str) -> BundleRecord:
        """The bundle ``ref`` names, if it may be deleted: an explicit, existing version."""
        parsed = parse_ref(ref)
        if parsed.is_latest:
            raise RepositoryError(
                f"name the version to delete, not {parsed}; `kappa get {parsed.name}` lists them"
            )
        return self.get(parsed)

    def delete(self, ref: str) -> BundleRecord:
        """Soft-delete the row (the bundle disappears from list and latest), then remove its files."""
        record = self.deletable(ref)
        self.metadata.set_status(record.name, record.version, DELETED)
        files.remove(record.uri)
        log.debug("deleted %s", record.tag)
        return record

    def count(self) -> dict[str, int]:
        return {"ready": len(self.metadata.list(statuses=(READY,)))}
