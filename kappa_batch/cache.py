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


def load_service(ref: str | os.PathLike[str]) -> tuple[BentoService, Manifest]:
    """The service of bundle ``ref`` (path, URL or ``NAME:VERSION``), loaded at most once per process."""
    from kappa.bundle.load import load_from_dir, resolve
    from kappa.bundle.manifest import load_manifest

    path = resolve(ref)
    manifest = load_manifest(path)
    with _lock:
        service = _services.get(manifest.digest)
        if service is None:
            log.debug("loading %s (%s) in process %d", manifest.tag, manifest.digest[:19], os.getpid())
            service = _services[manifest.digest] = load_from_dir(path)
    return service, manifest


def cached_digests() -> list[str]:
    with _lock:
        return list(_services)
