"""Loaded services, cached per process by bundle digest: one load per worker, never per batch."""

from __future__ import annotations

import logging
import os
import threading
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from kappa.bundle.manifest import Manifest
    from kappa.service import BentoService

log = logging.getLogger(__name__)

_lock = threading.Lock()
_services: dict[str, BentoService] = {}


def load_service(
    ref: str | os.PathLike[str], expected_digest: str | None = None
) -> tuple[BentoService, Manifest]:
    """The service of bundle ``ref`` (path, URL or ``NAME:VERSION``), loaded at most once per process.

    ``expected_digest`` (what the driver or the repository recorded) must be the bundle's
    digest; a repository reference brings the one its database holds.
    """
    from kappa.bundle.load import expect_digest, load_from_dir, locate
    from kappa.bundle.manifest import load_manifest

    located = locate(ref)
    manifest = load_manifest(located.path)
    expect_digest(manifest, located.path, expected_digest, located.digest)
    with _lock:
        service = _services.get(manifest.digest)
        if service is None:
            log.debug("loading %s (%s) in process %d", manifest.tag, manifest.digest[:19], os.getpid())
            service = _services[manifest.digest] = load_from_dir(located.path, manifest.digest)
    return service, manifest


def cached_digests() -> list[str]:
    with _lock:
        return list(_services)
