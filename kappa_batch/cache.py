"""The one per-process cache of loaded bundles, keyed by digest: one load per worker, never per batch.

A process (``kappa run``, a Spark Python worker, a Dask worker, a server) loads a bundle
once, checks its packages against the bundle's pins once, and keeps beside it one
:class:`~kappa_batch.runner.BatchRunner` per API (see :mod:`kappa_batch.workers`) and the
output schemas the driver learned from samples.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from kappa.errors import InputError, KappaError

if TYPE_CHECKING:
    import pyarrow as pa

    from kappa.bundle.manifest import Manifest
    from kappa.service import BentoService
    from kappa_batch.runner import BatchRunner
    from kappa_batch.shipping import BundleHandle

log = logging.getLogger(__name__)

ENV_CHECKS = ("fail", "warn", "ignore")


@dataclass
class Loaded:
    """A bundle loaded in this process, and what the process keeps beside it."""

    service: BentoService
    manifest: Manifest
    location: str  # the folder or URL this process loaded it from
    runners: dict[str, BatchRunner] = field(default_factory=dict)  # API -> its runner (kappa_batch.workers)
    differences: list[str] | None = None  # this process's packages against the bundle's pins, once
    schemas: dict[tuple[str, str], pa.Schema] = field(default_factory=dict)  # (api, input key) -> outputs


_lock = threading.RLock()
_loaded: dict[str, Loaded] = {}


def forget(digest: str) -> None:
    """Drop a bundle this process no longer serves (a version swapped out), so months of hot
    swaps do not keep every version's model in memory."""
    with _lock:
        _loaded.pop(digest, None)


def check_env_check(value: str) -> None:
    if value not in ENV_CHECKS:
        raise InputError(f"env_check must be one of {ENV_CHECKS}, not {value!r}")


def _entry(ref: str | os.PathLike[str], expected_digest: str | None) -> Loaded:
    from kappa.bundle.load import expect_digest, load_from_dir, locate
    from kappa.bundle.manifest import load_manifest

    if expected_digest is not None:
        entry = _loaded.get(expected_digest)
        if entry is not None and entry.location == os.fspath(ref):
            return entry
    located = locate(ref)
    manifest = load_manifest(located.path)
    expect_digest(manifest, located.path, expected_digest, located.digest)
    with _lock:
        entry = _loaded.get(manifest.digest)
        if entry is None:
            log.debug("loading %s (%s) in process %d", manifest.tag, manifest.digest[:19], os.getpid())
            service = load_from_dir(located.path, manifest.digest)
            entry = _loaded[manifest.digest] = Loaded(service, manifest, os.fspath(ref))
    return entry


def load_service(
    ref: str | os.PathLike[str], expected_digest: str | None = None
) -> tuple[BentoService, Manifest]:
    """The service of bundle ``ref`` (path, URL or ``NAME:VERSION``), loaded at most once per process.

    ``expected_digest`` (what the driver or the repository recorded) must be the bundle's
    digest; a repository reference brings the one its database holds.
    """
    entry = _entry(ref, expected_digest)
    return entry.service, entry.manifest


def loaded(handle: BundleHandle, env_check: str) -> Loaded:
    """On a worker: the bundle ``handle`` names, loaded once per process from where the driver put
    it, verified by the driver's digest, and checked against this worker's packages (compared
    once; ``fail`` refuses, ``warn`` logs once, ``ignore`` skips)."""
    entry = _loaded.get(handle.digest)
    if entry is None:
        entry = _entry(handle.location(), handle.digest)
    if env_check != "ignore":
        _check_environment(entry, env_check)
    return entry


def learned_schema(
    ref: str | os.PathLike[str], digest: str, api: str, input_key: str, learn: Callable[[], pa.Schema]
) -> pa.Schema:
    """The output schema ``learn()`` finds for ``api`` and inputs like ``input_key``, once per process."""
    entry = _entry(ref, digest)
    key = (api, input_key)
    if key not in entry.schemas:
        entry.schemas[key] = learn()
    return entry.schemas[key]


def loaded_from() -> dict[str, str]:
    """The bundles this process has loaded: digest -> the folder or URL it read."""
    with _lock:
        return {digest: entry.location for digest, entry in _loaded.items()}


def _check_environment(entry: Loaded, env_check: str) -> None:
    first = entry.differences is None
    if entry.differences is None:
        from kappa.bundle.env import environment_differences

        entry.differences = environment_differences(entry.manifest.pip_packages)
    if not entry.differences:
        return
    message = (
        f"this worker's Python packages differ from what bundle {entry.manifest.tag} pins: "
        + "; ".join(entry.differences)
        + " (install the bundle's env/requirements.txt on the workers, or pass env_check='warn')"
    )
    if env_check == "fail":
        raise KappaError(message)
    if first:  # "warn": once per process
        log.warning(message)
