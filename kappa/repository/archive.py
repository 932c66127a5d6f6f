"""Bundle archives (``kappa export`` / ``kappa import``): tar.gz, extracted defensively."""

from __future__ import annotations

import tarfile
import zlib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from kappa.errors import RepositoryError
from kappa.settings import IMPORT_DEFAULTS

MANIFEST = "kappa.yml"
# The most a pax or GNU long-name header may hold: tarfile reads these whole into memory
# before a member is seen, so a few KB of archive could otherwise ask for gigabytes.
MAX_EXTENDED_HEADER = 64 * 1024


class _BoundedTarInfo(tarfile.TarInfo):
    """A TarInfo that refuses extended headers (pax, GNU long names) past MAX_EXTENDED_HEADER
    before tarfile reads them."""

    def _proc_member(self, tarfile_: tarfile.TarFile) -> tarfile.TarInfo:
        extended = (tarfile.GNUTYPE_LONGNAME, tarfile.GNUTYPE_LONGLINK, tarfile.XHDTYPE, tarfile.XGLTYPE)
        if self.type in extended and self.size > MAX_EXTENDED_HEADER:
            raise tarfile.HeaderError(
                f"an extended header of {self.size} bytes (at most {MAX_EXTENDED_HEADER} are read)"
            )
        member: tarfile.TarInfo = super()._proc_member(tarfile_)  # type: ignore[misc]
        return member


@dataclass(frozen=True)
class Limits:
    """The most an imported bundle may hold (settings ``import.max_files|max_bytes|max_ratio``)."""

    max_files: int = IMPORT_DEFAULTS["import_max_files"]
    max_bytes: int = IMPORT_DEFAULTS["import_max_bytes"]
    max_ratio: int = IMPORT_DEFAULTS["import_max_ratio"]  # extracted bytes per archive byte

    @classmethod
    def unlimited(cls) -> Limits:
        """For archives this job made itself (a Spark or Dask driver's shipped bundle)."""
        return cls(2**62, 2**62, 2**62)

    def check(self, source: str, files: int, size: int, packed: int | None = None) -> None:
        hint = "; raise the limit with `kappa config set {key}=N` if this bundle is genuine"
        if files > self.max_files:
            raise RepositoryError(
                f"{source}: refusing a bundle of more than {self.max_files} files (import.max_files)"
                + hint.format(key="import.max_files")
            )
        if size > self.max_bytes:
            raise RepositoryError(
                f"{source}: refusing a bundle of more than {self.max_bytes} bytes (import.max_bytes)"
                + hint.format(key="import.max_bytes")
            )
        if packed is not None and size > max(packed, 1) * self.max_ratio and size > 1024**2:
            raise RepositoryError(
                f"{source}: refusing an archive that expands {size // max(packed, 1)} times or more "
                f"({packed} bytes to {size}), past import.max_ratio={self.max_ratio}: a compression bomb?"
                + hint.format(key="import.max_ratio")
            )


def write_archive(bundle_dir: Path, target: Path, arcname: str) -> None:
    """Write ``bundle_dir`` as ``target`` (tar.gz) with every file under ``arcname/``."""
    partial = target.with_name(f".{target.name}.partial")
    with tarfile.open(partial, "w:gz") as archive:
        for file in sorted(p for p in bundle_dir.rglob("*") if p.is_file() and "__pycache__" not in p.parts):
            archive.add(file, arcname=f"{arcname}/{file.relative_to(bundle_dir).as_posix()}", recursive=False)
    partial.rename(target)


def _check_member(member: tarfile.TarInfo, source: str) -> None:
    name = member.name if len(member.name) <= 300 else member.name[:300] + "..."
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


def _scan(archive: tarfile.TarFile, source: str, packed: int, limits: Limits) -> list[tarfile.TarInfo]:
    """Every member, checked one header at a time: a bomb is refused at the header that crosses a limit."""
    members: list[tarfile.TarInfo] = []
    size = 0
    while (member := archive.next()) is not None:
        _check_member(member, source)
        members.append(member)
        size += member.size
        limits.check(source, len(members), size, packed)
    return members


def extract_archive(
    archive_path: Path, target: Path, limits: Limits | None = None, source: str | None = None
) -> Path:
    """Extract a bundle archive into ``target``; returns the folder that holds ``kappa.yml``.

    Every header is checked (paths, links, devices, extended headers' sizes, and ``limits``)
    before one file is written. ``source`` names the archive in messages (default: its path).
    """
    source = source or str(archive_path)
    limits = limits or Limits()
    try:
        with tarfile.open(archive_path, "r:*", tarinfo=_BoundedTarInfo) as archive:
            members = _scan(archive, source, archive_path.stat().st_size, limits)
            archive.extractall(target, members=members, filter="data")
    except (tarfile.TarError, EOFError, OSError, zlib.error) as exc:
        if isinstance(exc, OSError) and exc.errno is not None:
            raise RepositoryError(f"cannot extract {source} into {target}: {exc}") from None
        raise RepositoryError(
            f"{source} is not a readable tar.gz archive ({type(exc).__name__}: {exc or 'truncated'}); "
            "export the bundle again with `kappa export`"
        ) from None
    if (target / MANIFEST).is_file():
        return target
    candidates = [p.parent for p in target.glob(f"*/{MANIFEST}")]
    if len(candidates) != 1:
        raise RepositoryError(f"{source} holds no bundle: no {MANIFEST} at its top or in one folder below")
    return candidates[0]
