"""Bundle archives (``kappa export`` / ``kappa import``): tar.gz, extracted defensively."""

from __future__ import annotations

import tarfile
from pathlib import Path, PurePosixPath

from kappa.errors import RepositoryError

MANIFEST = "kappa.yml"


def write_archive(bundle_dir: Path, target: Path, arcname: str) -> None:
    """Write ``bundle_dir`` as ``target`` (tar.gz) with every file under ``arcname/``."""
    partial = target.with_name(f".{target.name}.partial")
    with tarfile.open(partial, "w:gz") as archive:
        for file in sorted(p for p in bundle_dir.rglob("*") if p.is_file() and "__pycache__" not in p.parts):
            archive.add(file, arcname=f"{arcname}/{file.relative_to(bundle_dir).as_posix()}", recursive=False)
    partial.rename(target)


def _check_member(member: tarfile.TarInfo, source: str) -> None:
    name = member.name
    path = PurePosixPath(name)
    if name.startswith(("/", "\\")) or path.is_absolute() or (len(name) > 1 and name[1] == ":"):
        raise RepositoryError(f"{source}: refusing the absolute path {name!r} in the archive")
    if ".." in path.parts:
        raise RepositoryError(f"{source}: refusing {name!r}, which points outside the archive (..)")
    if member.issym() or member.islnk():
        raise RepositoryError(f"{source}: refusing the link {name!r}; bundles hold plain files only")
    if member.isdev() or member.ischr() or member.isblk() or member.isfifo():
        raise RepositoryError(f"{source}: refusing the device or pipe {name!r}")
    if not (member.isfile() or member.isdir()):
        raise RepositoryError(f"{source}: refusing {name!r}, which is not a plain file or folder")


def extract_archive(archive_path: Path, target: Path) -> Path:
    """Extract a bundle archive into ``target``; returns the folder that holds ``kappa.yml``."""
    source = str(archive_path)
    try:
        with tarfile.open(archive_path, "r:*") as archive:
            members = archive.getmembers()
            for member in members:
                _check_member(member, source)
            archive.extractall(target, members=members, filter="data")
    except tarfile.TarError as exc:
        raise RepositoryError(f"{source} is not a readable tar archive: {exc}") from None
    if (target / MANIFEST).is_file():
        return target
    candidates = [p.parent for p in target.glob(f"*/{MANIFEST}")]
    if len(candidates) != 1:
        raise RepositoryError(f"{source} holds no bundle: no {MANIFEST} at its top or in one folder below")
    return candidates[0]
