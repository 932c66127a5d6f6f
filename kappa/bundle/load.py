"""Load a bundle back into a service: verify every file, then import and unpickle."""

from __future__ import annotations

import importlib
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kappa.bundle import manifest as mf
from kappa.bundle.integrity import verify
from kappa.bundle.namespace import bundle_namespace
from kappa.errors import BundleError

if TYPE_CHECKING:
    from kappa.service import BentoService


def looks_like_path(ref: str) -> bool:
    return "/" in ref or os.sep in ref or ref.startswith((".", "~")) or "://" in ref or os.path.exists(ref)


def resolve(ref: str | os.PathLike[str]) -> Path:
    """A local bundle folder for a path, a URL or a ``NAME[:VERSION|:latest]`` reference."""
    text = os.fspath(ref)
    if not text:
        raise BundleError("empty bundle reference; pass a bundle folder or NAME:VERSION")
    if looks_like_path(text):
        if "://" in text and not text.startswith("file://"):
            from kappa.repository.files import fetch_bundle

            return fetch_bundle(text)
        path = Path(text.removeprefix("file://")).expanduser()
        if not path.exists():
            raise BundleError(f"no bundle at {text!r}: the folder does not exist")
        return path
    from kappa.repository import open_repository

    return open_repository().local_path(text)


def load_from_dir(bundle_dir: Path) -> BentoService:
    """Load the bundle in ``bundle_dir``, verifying file digests before any import or unpickle."""
    from kappa.service import BentoService

    manifest = mf.load_manifest(bundle_dir)
    verify(bundle_dir, manifest.all_files)
    with bundle_namespace(bundle_dir / "src", manifest.digest):
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


def load(ref: str | os.PathLike[str]) -> BentoService:
    """Load a service from a bundle folder, a URL, or a repository reference.

    ``kappa.load("./bundles/IrisClassifier")``, ``kappa.load("IrisClassifier:latest")``,
    ``kappa.load("IrisClassifier:20261122T101500Z_3F9A2C1B")``.
    """
    return load_from_dir(resolve(ref))


def read_manifest(ref: str | os.PathLike[str]) -> mf.Manifest:
    """The manifest of a bundle, without importing or unpickling anything."""
    return mf.load_manifest(resolve(ref))
