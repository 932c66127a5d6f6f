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


def not_writable_by_others(root: Path) -> None:
    """Clear the group and world write bits below ``root``, whatever the umask was."""
    import os
    import stat

    for path in [root, *root.rglob("*")]:
        if path.is_symlink():
            continue
        mode = stat.S_IMODE(path.stat().st_mode)
        if mode & 0o022:
            os.chmod(path, mode & ~0o022)


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


def _check(root: Path, entry: FileEntry, keep: bool = False) -> bytes | None:
    """Raise unless the file matches its entry; with ``keep``, return the bytes that were checked."""
    file = root / safe_relative(entry.path)
    if not file.is_file():
        raise BundleIntegrityError(
            f"bundle {root} is incomplete: {entry.path} is missing; retrieve or re-save the bundle"
        )
    data = file.read_bytes() if keep else None
    if data is None:
        sha, size = hash_file(file)
    else:
        sha, size = hashlib.sha256(data).hexdigest(), len(data)
    if size != entry.size or sha != entry.sha256:
        raise BundleIntegrityError(
            f"bundle {root} was modified after it was saved: {entry.path} has sha256 {sha[:12]}... "
            f"({size} bytes), the manifest says {entry.sha256[:12]}... ({entry.size} bytes); "
            "nothing was unpickled. Re-save the bundle or fetch an intact copy"
        )
    return data


def verify(root: Path, entries: Iterable[FileEntry]) -> None:
    """Raise :class:`BundleIntegrityError` unless every file matches its size and sha256."""
    for entry in entries:
        _check(root, entry)


# Written beside a bundle by tools, never read by Kappa: bytecode (Kappa never imports it)
# and what `pip install <bundle folder>` leaves at the top of the folder it builds in.
_IGNORED_DIRS = frozenset({"__pycache__"})
_IGNORED_TOP = ("build/",)
MANIFEST_NAME = "kappa.yml"


def _ignored(rel: str) -> bool:
    parts = PurePosixPath(rel).parts
    if any(p in _IGNORED_DIRS for p in parts[:-1]):
        return True
    return rel.startswith(_IGNORED_TOP) or (len(parts) > 1 and parts[0].endswith(".egg-info"))


def unlisted_files(root: Path, entries: Iterable[FileEntry]) -> list[str]:
    """Files in ``root`` that the manifest does not list (bytecode and pip build output aside)."""
    listed = {e.path for e in entries} | {MANIFEST_NAME}
    found = []
    for file in root.rglob("*"):
        if file.is_symlink() or not file.is_dir():
            rel = file.relative_to(root).as_posix()
            if rel not in listed and not _ignored(rel):
                found.append(rel)
    return sorted(found)


def check_digest(where: str, entries: Iterable[FileEntry], recorded: str, expected: str | None) -> None:
    """The manifest's digest must be the digest of its file list, and what the repository recorded."""
    actual = bundle_digest(entries)
    if actual != recorded:
        raise BundleIntegrityError(
            f"bundle {where} was modified after it was saved: its manifest's file list has digest "
            f"{actual[:19]}..., the manifest says {recorded[:19]}...; nothing was imported. "
            "Re-save the bundle or fetch an intact copy"
        )
    if expected is not None and recorded != expected:
        raise BundleIntegrityError(
            f"bundle {where} is not the bundle the repository recorded: its digest is {recorded[:19]}..., "
            f"the repository's is {expected[:19]}...; nothing was imported. Someone changed the "
            "bundle's files after it was saved; restore them or re-save the bundle"
        )


def verify_bundle(
    root: Path, entries: list[FileEntry], recorded: str, expected: str | None = None
) -> dict[str, bytes]:
    """Check a whole bundle folder before anything in it is imported or unpickled.

    The manifest's digest must match its file list (and ``expected``, the digest the
    repository recorded, when given); the folder must hold no file the manifest does
    not list; every listed file must match its sha256. Returns the verified bytes of
    the ``src/`` files, which are what gets imported.
    """
    check_digest(str(root), entries, recorded, expected)
    extra = unlisted_files(root, entries)
    if extra:
        shown = ", ".join(extra[:5]) + (f" and {len(extra) - 5} more" if len(extra) > 5 else "")
        raise BundleIntegrityError(
            f"bundle {root} holds {len(extra)} file(s) its manifest does not list ({shown}); "
            "nothing was imported. A bundle holds exactly the files it was saved with: remove "
            "them, or retrieve an intact copy"
        )
    sources: dict[str, bytes] = {}
    for entry in entries:
        source = entry.path.startswith("src/") and entry.path.endswith(".py")
        data = _check(root, entry, keep=source)
        if data is not None:
            sources[entry.path] = data
    return sources
