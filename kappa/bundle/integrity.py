"""File digests: recorded when a bundle is written, verified before anything is unpickled."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from kappa.errors import BundleError, BundleIntegrityError

CHUNK = 1 << 20


@dataclass(frozen=True)
class FileEntry:
    path: str  # POSIX path relative to the bundle root
    sha256: str
    size: int

    def to_dict(self) -> dict[str, object]:
        return {"path": self.path, "sha256": self.sha256, "size": self.size}


def hash_file(path: Path) -> tuple[str, int]:
    digest = hashlib.sha256()
    size = 0
    with open(path, "rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


def describe_tree(root: Path, under: str = "") -> list[FileEntry]:
    """Entries for every file below ``root/under``, sorted by path."""
    base = root / under if under else root
    entries = []
    for file in sorted(p for p in base.rglob("*") if p.is_file() and "__pycache__" not in p.parts):
        sha, size = hash_file(file)
        entries.append(FileEntry(file.relative_to(root).as_posix(), sha, size))
    return entries


def bundle_digest(entries: Iterable[FileEntry]) -> str:
    """One digest over every file's path and sha256: the bundle's identity."""
    digest = hashlib.sha256()
    for entry in sorted(entries, key=lambda e: e.path):
        digest.update(f"{entry.path}\t{entry.sha256}\n".encode())
    return f"sha256:{digest.hexdigest()}"


def safe_relative(path: str) -> str:
    """Reject manifest paths that would leave the bundle folder."""
    pure = PurePosixPath(path)
    if pure.is_absolute() or ".." in pure.parts or not pure.parts or "\\" in path:
        raise BundleError(f"the manifest names the file {path!r}, which is outside the bundle")
    return path


def verify(root: Path, entries: Iterable[FileEntry]) -> None:
    """Raise :class:`BundleIntegrityError` unless every file matches its size and sha256."""
    for entry in entries:
        file = root / safe_relative(entry.path)
        if not file.is_file():
            raise BundleIntegrityError(
                f"bundle {root} is incomplete: {entry.path} is missing; retrieve or re-save the bundle"
            )
        sha, size = hash_file(file)
        if size != entry.size or sha != entry.sha256:
            raise BundleIntegrityError(
                f"bundle {root} was modified after it was saved: {entry.path} has sha256 {sha[:12]}... "
                f"({size} bytes), the manifest says {entry.sha256[:12]}... ({entry.size} bytes); "
                "nothing was unpickled. Re-save the bundle or fetch an intact copy"
            )
