"""Bundles on remote workers (Spark executors, Dask workers): ship, unpack, verify, load once.

The driver turns a bundle into a :class:`BundleHandle` (its digest, plus a URL the
workers read or the name of an archive shipped with the job). A worker unpacks a
shipped archive once, checks the digest, optionally compares its Python packages
with the bundle's pins, and keeps one :class:`~kappa_batch.runner.BatchRunner` per
bundle and API for the life of the process.
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
from typing import TYPE_CHECKING

import pyarrow as pa

from kappa.errors import InputError, KappaError

if TYPE_CHECKING:
    from kappa.bundle.manifest import Manifest
    from kappa_batch.runner import BatchRunner

log = logging.getLogger(__name__)

ENV_CHECKS = ("fail", "warn", "ignore")
_lock = threading.Lock()
_checked: set[str] = set()
_runners: dict[tuple[str, str], BatchRunner] = {}
_locations: dict[str, str] = {}  # digest -> where this process loaded the bundle from
_ship_dir: list[str] = []  # this driver's archives, removed when it exits


@dataclass(frozen=True)
class BundleHandle:
    """How workers find a bundle: a URL (or path) they read, or an archive shipped with the job."""

    digest: str
    tag: str
    url: str | None = None
    shipped_name: str | None = None

    @property
    def short(self) -> str:
        return self.digest.removeprefix("sha256:")[:16]


def check_env_check(value: str) -> None:
    if value not in ENV_CHECKS:
        raise InputError(f"env_check must be one of {ENV_CHECKS}, not {value!r}")


ERROR_MODES = ("raise", "column")


def check_errors(value: str) -> None:
    if value not in ERROR_MODES:
        raise InputError(f"errors must be 'raise' or 'column', not {value!r}")


_verified: set[tuple[str, str]] = set()  # (folder, digest) this driver verified


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


_learned: dict[tuple[str, str, str], pa.Schema] = {}


def output_schema(
    bundle: str | os.PathLike[str],
    api: str,
    input_key: str,
    sample: Callable[[], pa.RecordBatch | pa.Table],
    hint: str,
) -> pa.Schema:
    """The API's output columns: declared in the bundle's manifest, or learned by scoring ``sample()``
    (real rows of the input, never made-up ones) here once, remembered per bundle, API and
    ``input_key`` (the input's columns and types)."""
    from kappa.bundle.manifest import schema_from_dict

    path, manifest = describe(bundle)
    declared = schema_from_dict(manifest.api(api).output_schema)
    if declared is not None:
        return declared
    key = (manifest.digest, api, input_key)
    if key not in _learned:
        from kappa_batch.runner import BatchRunner

        result = BatchRunner(path, api).run(sample())
        if result.errors.num_rows == result.outputs.num_rows:
            why = result.errors.to_pylist()[0]["message"] if result.errors.num_rows else "the input is empty"
            raise InputError(
                f"cannot tell the output columns of API {api}: "
                f"no sampled row got a prediction ({why}); {hint}"
            )
        _learned[key] = result.outputs.schema
    return _learned[key]


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


def worker_runner(handle: BundleHandle, location: str, api: str, env_check: str) -> BatchRunner:
    """The runner for ``api`` of the bundle at ``location``; loaded and checked once per process."""
    key = (handle.digest, api)
    runner = _runners.get(key)
    if runner is not None:
        return runner
    from kappa_batch.cache import load_service
    from kappa_batch.runner import BatchRunner

    service, manifest = load_service(location, expected_digest=handle.digest)
    _check_environment(manifest, env_check)
    with _lock:
        runner = _runners.setdefault(key, BatchRunner(service, api))
        _locations.setdefault(manifest.digest, location)
    return runner


def loaded_from() -> dict[str, str]:
    """The bundles this worker process has loaded: digest -> the folder or URL it read."""
    with _lock:
        return dict(_locations)


def _check_environment(manifest: Manifest, env_check: str) -> None:
    from kappa.bundle.env import environment_differences

    if env_check == "ignore" or manifest.digest in _checked:
        return
    differences = environment_differences(manifest.pip_packages)
    if differences:
        message = (
            f"this worker's Python packages differ from what bundle {manifest.tag} pins: "
            + "; ".join(differences)
            + " (install the bundle's env/requirements.txt on the workers, or pass env_check='warn')"
        )
        if env_check == "fail":
            raise KappaError(message)
        log.warning(message)
    _checked.add(manifest.digest)
