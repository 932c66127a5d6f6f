"""A bundle as a tar stream of known length: written chunk by chunk, never whole in memory.

The registry server sends bundles this way and clients upload them this way; the
receiving side writes the stream to a file and extracts it with
:func:`kappa.repository.archive.extract_archive`, which checks every header.
"""

from __future__ import annotations

import functools
import tarfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

BLOCK = 512
CHUNK = 1 << 20


@dataclass(frozen=True)
class Member:
    name: str  # the path inside the archive
    size: int
    open: Callable[[], IO[bytes]]

    def header(self) -> bytes:
        info = tarfile.TarInfo(self.name)
        info.size, info.mode, info.mtime = self.size, 0o644, 0
        return info.tobuf(format=tarfile.PAX_FORMAT)


def folder_members(root: Path, paths: Sequence[str]) -> list[Member]:
    """The files ``paths`` (relative to ``root``) as members."""
    return [Member(rel, (root / rel).stat().st_size, _opener(root / rel)) for rel in paths]


def _opener(path: Path) -> Callable[[], IO[bytes]]:
    def open_() -> IO[bytes]:
        return path.open("rb")

    return open_


def fs_members(fs: Any, root: str, paths: Sequence[str]) -> list[Member]:
    """The files ``paths`` under ``root`` in the fsspec filesystem ``fs`` as members."""
    base = root.rstrip("/")
    return [
        Member(rel, int(fs.size(f"{base}/{rel}")), functools.partial(fs.open, f"{base}/{rel}", "rb"))
        for rel in paths
    ]


def size(members: Sequence[Member]) -> int:
    """The exact length of :func:`chunks` of ``members``, in bytes."""
    return sum(len(m.header()) + m.size + (-m.size % BLOCK) for m in members) + 2 * BLOCK


def chunks(members: Sequence[Member], chunk: int = CHUNK) -> Iterator[bytes]:
    """The tar archive of ``members``, in pieces of at most ``chunk`` bytes (plus headers)."""
    for member in members:
        yield member.header()
        left = member.size
        with member.open() as handle:
            while left > 0:
                piece = handle.read(min(chunk, left))
                if not piece:
                    raise OSError(f"{member.name} is shorter than the {member.size} bytes it had")
                left -= len(piece)
                yield piece
        if member.size % BLOCK:
            yield b"\0" * (-member.size % BLOCK)
    yield b"\0" * (2 * BLOCK)
