"""The repository: bundle files (fsspec) plus their metadata rows (SQLAlchemy)."""

from __future__ import annotations

import logging
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kappa.bundle.version import new_version, validate_name, validate_version
from kappa.errors import BundleNotFound, MetadataUnavailable, RepositoryError, VersionExists
from kappa.repository import files
from kappa.repository.base import BundleStore
from kappa.repository.labels import validate_labels
from kappa.repository.metadata import DELETED, DISCARDING, PENDING, READY, MetadataStore
from kappa.repository.records import BundleRecord
from kappa.repository.reference import BundleRef, parse_ref
from kappa.repository.selectors import parse_selector

if TYPE_CHECKING:
    from kappa.bundle.manifest import Manifest
    from kappa.repository.records import RunRecord
    from kappa.repository.runs import RunStore
    from kappa.service import BentoService
    from kappa.settings import KappaSettings

log = logging.getLogger(__name__)


def summary(manifest: Manifest) -> dict[str, Any]:
    """What ``kappa list`` shows, stored beside the row so listing never reads files."""
    return {
        "apis": [f"{a.name}<{a.input_type}>" for a in manifest.apis],
        "artifacts": [f"{a.name}<{a.type}>" for a in manifest.artifacts],
    }


class Repository(BundleStore):
    def __init__(self, settings: KappaSettings) -> None:
        self.settings = settings
        self.base_url = settings.base_url.rstrip("/")
        self.metadata = MetadataStore(settings.db_url, settings.db_reconnect_seconds)
        self._runs: RunStore | None = None

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
            except VersionExists:
                if explicit:
                    raise
                current = new_version()
        raise RepositoryError(f"could not allocate a new version for {name}")  # pragma: no cover

    @contextmanager
    def _pending(self, name: str, version: str, uri: str) -> Iterator[None]:
        """Undo a pending row and its partial files if storing fails.

        Only a row still ``pending`` is removed. When the database went away while the row
        turned ``ready`` (the commit happened, its answer was lost), the version is complete and
        stays. When the database cannot be reached to remove the row, it stays ``pending``, which
        is never listed; its files are removed unless the failure was a commit in doubt (then the
        row may be ``ready``, and the files are its). Nothing is ever half-visible.
        """
        try:
            yield
        except BaseException as exc:
            in_doubt = isinstance(exc, MetadataUnavailable) and exc.in_doubt  # its commit may have happened
            try:
                status = self.metadata.discard_pending(name, version)
            except MetadataUnavailable:
                log.warning(
                    "%s:%s stays pending (never listed): the database did not answer to remove its row",
                    name,
                    version,
                )
                status = "unknown"
            if status == READY and isinstance(exc, MetadataUnavailable):
                log.warning("%s:%s is complete: its commit reached the database first", name, version)
                return
            maybe_complete = status == READY or (status == "unknown" and in_doubt)
            if not maybe_complete:  # the row never turned ready: the files at its location are ours to remove
                try:
                    files.remove(uri)
                except Exception as cleanup:  # noqa: BLE001 - the store may be what failed; say the first error
                    log.warning("could not remove the files of %s:%s at %s: %s", name, version, uri, cleanup)
            if status in (None, DISCARDING):  # its row went: `kappa gc` took it for a stranded save
                raise RepositoryError(
                    f"the save of {name}:{version} was discarded while it ran: `kappa gc` removes saves "
                    "begun over its --older-than ago; save again"
                ) from None
            if isinstance(exc, MetadataUnavailable):
                outcome = (
                    "whether it completed is not known: once the database answers, "
                    f"`kappa get {name}:{version}` says (it is listed only if it is complete)"
                    if maybe_complete
                    else "it did not complete and it is not listed: save again once the database answers"
                )
                raise MetadataUnavailable(f"{exc}; the save of {name}:{version}: {outcome}") from None
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
            raise BundleNotFound(f"bundle {parsed} not found: {hint}; see `kappa list`")
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

    def _copy_bundle(self, record: BundleRecord, target_dir: Path) -> None:
        if files.is_local(record.uri):
            files.copy_folder(files.local_part(record.uri), target_dir)
        else:
            files.download(record.uri, target_dir)

    def set_labels(self, ref: str, labels: Mapping[str, str]) -> BundleRecord:
        """Replace the labels of one explicit, ready version."""
        record = self.deletable(ref, action="relabel")
        self.metadata.set_labels(record.name, record.version, validate_labels(labels))
        return self.get(record.tag)

    # -- lineage -------------------------------------------------------------
    def record_run(self, report: Mapping[str, Any]) -> RunRecord:
        """Keep a scoring run's report (``kappa runs list`` shows it)."""
        return self.runs().add(report)

    def runs(self) -> RunStore:
        """The run records (opened once: the registry server reads them on every request)."""
        if self._runs is None:
            from kappa.repository.runs import RunStore

            self._runs = RunStore(self.settings.db_url, self.settings.db_reconnect_seconds)
        return self._runs

    # -- deleting ------------------------------------------------------------
    def delete(self, ref: str) -> BundleRecord:
        """Soft-delete the row (the bundle disappears from list and latest), then remove its files."""
        record = self.deletable(ref)
        self.metadata.set_status(record.name, record.version, DELETED)
        files.remove(record.uri)
        log.debug("deleted %s", record.tag)
        return record

    # -- housekeeping --------------------------------------------------------
    def stranded(self, older_than: float) -> Sequence[BundleRecord]:
        """Saves that never completed, begun over ``older_than`` seconds ago, oldest first: their
        process died mid-save, or the database was away when they failed. Their rows stay
        ``pending`` (never listed); their files may be partly there. Also any save whose removal
        :meth:`discard` began and could not finish."""
        cutoff = time.time() - older_than
        rows = self.metadata.list(statuses=(PENDING, DISCARDING), descending=False)
        return [r for r in rows if r.status == DISCARDING or r.created_at < cutoff]

    def discard(self, record: BundleRecord) -> bool:
        """Remove a stranded save. Its row turns ``discarding`` first (a save still running then
        fails to complete, and removes its own files), then its files go, then the row. False:
        it completed or went meanwhile. When the files cannot be removed, the error propagates
        and the row stays ``discarding``: :meth:`stranded` lists it again."""
        if record.status == PENDING and not self.metadata.claim_stranded(record.name, record.version):
            return False
        files.remove_partial(record.uri)
        self.metadata.remove_discarded(record.name, record.version)
        log.debug("discarded the stranded save %s at %s", record.tag, record.uri)
        return True

    def count(self) -> dict[str, int]:
        return {"ready": len(self.metadata.list(statuses=(READY,)))}
