"""Load a bundle back into a service: verify every file, then import and unpickle."""

from __future__ import annotations

import importlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kappa.bundle import manifest as mf
from kappa.bundle.importer import BundleFinder
from kappa.bundle.integrity import verify_bundle
from kappa.bundle.namespace import bundle_namespace
from kappa.errors import BundleError, BundleIntegrityError

if TYPE_CHECKING:
    from kappa.service import BentoService


def looks_like_path(ref: str) -> bool:
    return "/" in ref or os.sep in ref or ref.startswith((".", "~")) or "://" in ref or os.path.exists(ref)


@dataclass(frozen=True)
class Located:
    """A local bundle folder, and the digest the repository recorded for it (None for a path or URL)."""

    path: Path
    digest: str | None = None


def locate(ref: str | os.PathLike[str]) -> Located:
    """Where the bundle ``ref`` (a path, a URL or ``NAME[:VERSION|:latest]``) is, and what it must be.

    A repository reference resolves through the metadata database, and the bundle's
    ``kappa.yml`` must agree with the row stored there (digest and content), so
    files changed in the file store alone are refused before anything is imported.
    """
    text = os.fspath(ref)
    if not text:
        raise BundleError("empty bundle reference; pass a bundle folder or NAME:VERSION")
    if looks_like_path(text):
        if "://" in text and not text.startswith("file://"):
            from kappa.repository.files import fetch_bundle

            return Located(fetch_bundle(text))
        path = Path(text.removeprefix("file://")).expanduser()
        if not path.exists():
            raise BundleError(f"no bundle at {text!r}: the folder does not exist")
        return Located(path)
    from kappa.repository import open_repository

    repository = open_repository()
    record = repository.get(text)
    path = repository.local_path(record)
    manifest = mf.load_manifest(path)
    if record.digest is not None and manifest.digest != record.digest:
        raise BundleIntegrityError(
            f"bundle {record.tag} at {record.uri} is not the bundle the repository recorded: its "
            f"kappa.yml says digest {manifest.digest[:19]}..., the database says {record.digest[:19]}...; "
            "nothing was imported. Its files were changed after it was saved: restore them, or "
            f"`kappa delete {record.tag}` and save it again"
        )
    stored = repository.manifest(record.tag)
    if stored and mf.canonical(stored) != mf.canonical(manifest.to_dict()):
        raise BundleIntegrityError(
            f"bundle {record.tag} at {record.uri}: its kappa.yml differs from the manifest the "
            "repository recorded when it was saved; nothing was imported. Restore the bundle's files, "
            f"or `kappa delete {record.tag}` and save it again"
        )
    return Located(path, record.digest)


def expect_digest(manifest: mf.Manifest, where: Path, *expected: str | None) -> None:
    """Raise unless ``manifest`` carries each digest given (the driver's, the repository's)."""
    for digest in expected:
        if digest and manifest.digest != digest:
            raise BundleIntegrityError(
                f"bundle {manifest.tag} at {where} has digest {manifest.digest[:19]}..., "
                f"expected {digest[:19]}...; nothing from it was run"
            )


def resolve(ref: str | os.PathLike[str]) -> Path:
    """A local bundle folder for a path, a URL or a ``NAME[:VERSION|:latest]`` reference."""
    return locate(ref).path


def load_from_dir(bundle_dir: Path, expected_digest: str | None = None) -> BentoService:
    """Load the bundle in ``bundle_dir``, verifying it whole before any import or unpickle.

    ``expected_digest`` is the digest recorded elsewhere (the repository's database, the
    driver that shipped the bundle); the manifest must carry exactly that digest.
    """
    from kappa.service import BentoService

    manifest = mf.load_manifest(bundle_dir)
    sources = verify_bundle(bundle_dir, manifest.all_files, manifest.digest, expected_digest)
    with bundle_namespace(BundleFinder(bundle_dir, sources), manifest.digest):
        try:
            module = importlib.import_module(manifest.service_module)
        except Exception as exc:
            raise BundleError(
                f"importing {manifest.service_module!r} from bundle {manifest.tag} failed: "
                f"{type(exc).__name__}: {exc}; are its requirements installed? "
                f"(see {bundle_dir / 'env' / 'requirements.txt'})"
            ) from exc
        cls: Any = getattr(module, manifest.service_class, None)
        if not (isinstance(cls, type) and issubclass(cls, BentoService)):
            raise BundleError(
                f"bundle {manifest.tag}: {manifest.service_module}.{manifest.service_class} "
                "is not a BentoService"
            )
        service: BentoService = cls()
        _recorded_batch_modes(service, manifest)
        declared = set(service.artifacts)
        stored = {a.name for a in manifest.artifacts}
        if declared != stored:
            raise BundleError(
                f"bundle {manifest.tag} stores artifacts {sorted(stored)} but its service "
                f"declares {sorted(declared)}"
            )
        for entry in manifest.artifacts:
            try:
                service.artifacts[entry.name].load(bundle_dir / entry.path, entry.metadata)
            except BundleError:
                raise
            except Exception as exc:
                raise BundleError(
                    f"loading artifact {entry.name!r} ({entry.type}) of {manifest.tag} failed: "
                    f"{type(exc).__name__}: {exc}"
                ) from exc
    service._version = manifest.version
    service._bundle_path = str(bundle_dir)
    service._labels = dict(manifest.labels)
    service._manifest = manifest
    return service


def _recorded_batch_modes(service: BentoService, manifest: mf.Manifest) -> None:
    """An API that left ``batch`` to its default runs as its bundle recorded it: bundles saved
    when the default was ``batch=True`` keep getting whole batches."""
    from kappa.service import InferenceAPI

    for entry in manifest.apis:
        api = service._apis.get(entry.name)
        if api is not None and not api.spec.batch_given and api.spec.batch != entry.batch:
            service._apis[entry.name] = InferenceAPI(service, api.spec.with_batch(entry.batch))


def load(ref: str | os.PathLike[str]) -> BentoService:
    """Load a service from a bundle folder, a URL, or a repository reference.

    ``kappa.load("./bundles/IrisClassifier")``, ``kappa.load("IrisClassifier:latest")``,
    ``kappa.load("IrisClassifier:20261122T101500Z_3F9A2C1B")``.
    """
    located = locate(ref)
    return load_from_dir(located.path, located.digest)


def read_manifest(ref: str | os.PathLike[str]) -> mf.Manifest:
    """The manifest of a bundle, without importing or unpickling anything."""
    return mf.load_manifest(resolve(ref))
