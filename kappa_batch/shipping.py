"""Bundles to remote workers (Spark executors, Dask workers): verify on the driver, ship once.

:func:`ship` verifies a bundle on the driver and turns it into a :class:`BundleHandle`
(small: its digest, plus a URL the workers read or the name of an archive a
:class:`Transport` delivered). Transports are small and engine-specific
(``SparkContext.addFile``, a Dask worker plugin); this module holds the rest: the
archive, the once-per-application registry, and unpacking on the worker.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from kappa.bundle.manifest import Manifest

log = logging.getLogger(__name__)

_lock = threading.Lock()
_shipped: set[tuple[str, str]] = set()  # (transport key, digest) this driver delivered
_verified: set[tuple[str, str]] = set()  # (folder, digest) this driver verified whole
_ship_dir: list[str] = []  # this driver's archives, removed when it exits


class Transport(Protocol):
    """How an engine delivers an archive to its workers, and where a worker finds it."""

    @property
    def key(self) -> str:
        """Who receives it (a Spark application, a Dask client): one delivery per key and bundle."""
        ...

    def send(self, archive: Path) -> None: ...

    @property
    def finder(self) -> Callable[[str], Path]:
        """A module-level function (pickled by reference): archive name -> its path on a worker."""
        ...


@dataclass(frozen=True)
class BundleHandle:
    """How workers find a bundle: a URL (or path) they read, or an archive a transport shipped."""

    digest: str
    tag: str
    url: str | None = None
    shipped_name: str | None = None
    finder: Callable[[str], Path] | None = None

    @property
    def short(self) -> str:
        return self.digest.removeprefix("sha256:")[:16]

    def location(self) -> str:
        """On a worker: the folder or URL to load the bundle from (a shipped archive is unpacked once)."""
        if self.shipped_name is None:
            assert self.url is not None
            return self.url
        assert self.finder is not None
        return unpacked(self.finder(self.shipped_name))


def describe(bundle: str | os.PathLike[str], expected_digest: str | None = None) -> tuple[Path, Manifest]:
    """The local folder and manifest of ``bundle`` (a path, URL or ``NAME[:VERSION|:latest]``),
    verified whole on the driver (once per process), so a tampered bundle fails here with one
    line, not as retried task failures on every executor. ``expected_digest`` is the digest
    the caller resolved earlier (e.g. the Airflow task that started this job)."""
    from kappa.bundle.integrity import verify_bundle
    from kappa.bundle.load import expect_digest, locate
    from kappa.bundle.manifest import load_manifest

    located = locate(bundle)
    manifest = load_manifest(located.path)
    expect_digest(manifest, located.path, expected_digest, located.digest)
    key = (str(located.path), manifest.digest)
    if key not in _verified:
        verify_bundle(located.path, manifest.all_files, manifest.digest)
        _verified.add(key)
    return located.path, manifest


def is_remote_url(bundle: str | os.PathLike[str]) -> bool:
    text = os.fspath(bundle)
    return "://" in text and not text.startswith("file://")


def ship(
    bundle: str | os.PathLike[str], transport: Transport | None, expected_digest: str | None = None
) -> BundleHandle:
    """Make ``bundle`` reachable from the workers: a URL they read themselves, the local folder
    (``transport`` None: the workers share this machine), or an archive ``transport`` delivers
    once per receiver. ``expected_digest``: the digest the bundle must have (see :func:`describe`)."""
    path, manifest = describe(bundle, expected_digest)
    if is_remote_url(bundle):
        return BundleHandle(manifest.digest, manifest.tag, url=os.fspath(bundle))
    if transport is None:
        return BundleHandle(manifest.digest, manifest.tag, url=str(path))
    archive = ship_archive(path, manifest)
    key = (transport.key, manifest.digest)
    with _lock:
        if key not in _shipped:
            transport.send(archive)
            _shipped.add(key)
    return BundleHandle(manifest.digest, manifest.tag, shipped_name=archive.name, finder=transport.finder)


def ship_archive(path: Path, manifest: Manifest) -> Path:
    """The bundle as a ``.tar.gz`` in a driver folder removed at exit (what gets shipped)."""
    from kappa.repository.archive import write_archive

    if not _ship_dir:
        import atexit

        _ship_dir.append(tempfile.mkdtemp(prefix="kappa-ship-"))
        atexit.register(shutil.rmtree, _ship_dir[0], ignore_errors=True)
    archive = Path(_ship_dir[0]) / f"kappa-bundle-{manifest.digest.removeprefix('sha256:')[:16]}.tar.gz"
    if not archive.exists():
        write_archive(path, archive, arcname="bundle")
    return archive


def unpacked(archive: Path, target: Path | None = None) -> str:
    """The shipped archive unpacked (by default next to it), once per machine, atomically."""
    from kappa.repository.archive import Limits, extract_archive

    target = target or archive.parent / f"{archive.name}.d"
    if (target / "kappa.yml").exists():
        return str(target)
    staging = Path(tempfile.mkdtemp(prefix=".unpack-", dir=target.parent))
    try:
        # made by this job's driver and verified by digest when loaded: no import limits apply
        folder = extract_archive(archive, staging, Limits.unlimited())
        try:
            os.rename(folder, target)
        except OSError:  # another process on this machine unpacked it first
            if not (target / "kappa.yml").exists():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return str(target)
