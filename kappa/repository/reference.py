"""Bundle references: ``NAME``, ``NAME:VERSION``, ``NAME:latest``."""

from __future__ import annotations

from dataclasses import dataclass

from kappa.bundle.version import validate_name, validate_version
from kappa.errors import BundleError

LATEST = "latest"


@dataclass(frozen=True)
class BundleRef:
    name: str
    version: str  # a concrete version or "latest"

    @property
    def is_latest(self) -> bool:
        return self.version == LATEST

    def __str__(self) -> str:
        return f"{self.name}:{self.version}"


def parse_ref(text: str) -> BundleRef:
    name, _, version = text.partition(":")
    if not name:
        raise BundleError(f"bad bundle reference {text!r}: expected NAME, NAME:VERSION or NAME:latest")
    validate_name(name)
    if not version or version == LATEST:
        return BundleRef(name, LATEST)
    return BundleRef(name, validate_version(version))
