"""The verified local bundle every deploy command starts from."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from kappa.bundle.manifest import Manifest, load_manifest


@dataclass(frozen=True)
class VerifiedBundle:
    path: Path
    manifest: Manifest


def verified_bundle(ref: str | os.PathLike[str]) -> VerifiedBundle:
    """The local folder of ``ref`` (path, URL or ``NAME[:VERSION|:latest]``), every file checked against
    its digest (and the repository's record) before anything is built from it."""
    from kappa.bundle.integrity import verify_bundle
    from kappa.bundle.load import locate

    located = locate(ref)
    manifest = load_manifest(located.path)
    verify_bundle(located.path, manifest.all_files, manifest.digest, located.digest)
    return VerifiedBundle(located.path, manifest)
