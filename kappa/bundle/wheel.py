"""The wheel of the running Kappa, carried by every bundle so that it installs offline.

A bundle pins the exact Kappa that saved it. The distribution is rebuilt from the code this
process runs (the ``kappa``, ``kappa_batch``, ``kappa_online`` and ``kappa_gamma`` packages
where they are imported from) and the installed distribution's metadata (its requirements, extras and
console scripts), so an editable checkout and an installed wheel give the same result. The
archive is deterministic: same code and metadata, same bytes, same digest.
"""

from __future__ import annotations

import base64
import hashlib
import importlib
import io
import zipfile
from dataclasses import dataclass
from pathlib import Path

from kappa._version import DISTRIBUTION, __version__
from kappa.errors import BundleError

PACKAGES = ("kappa", "kappa_batch", "kappa_online", "kappa_gamma")
_EPOCH = (1980, 1, 1, 0, 0, 0)  # the oldest time a zip entry can hold: no build time in the bytes
_built: KappaWheel | None = None


@dataclass(frozen=True)
class KappaWheel:
    filename: str
    data: bytes
    sha256: str


def wheel_filename(version: str = __version__) -> str:
    return f"{DISTRIBUTION.replace('-', '_')}-{version}-py3-none-any.whl"


def kappa_wheel() -> KappaWheel:
    """The running Kappa as a wheel (built once per process)."""
    global _built
    if _built is None:
        data = _build()
        _built = KappaWheel(wheel_filename(), data, hashlib.sha256(data).hexdigest())
    return _built


def write_kappa_wheel(folder: Path) -> KappaWheel:
    """Write the wheel into ``folder``; returns what was written."""
    wheel = kappa_wheel()
    (folder / wheel.filename).write_bytes(wheel.data)
    return wheel


def _metadata_files() -> dict[str, bytes]:
    from importlib.metadata import PackageNotFoundError, distribution

    try:
        dist = distribution(DISTRIBUTION)
    except PackageNotFoundError:
        raise BundleError(
            f"Kappa's package metadata ({DISTRIBUTION}) is not installed, so the bundle cannot carry "
            "an installable Kappa; install Kappa with pip (`pip install -e .` in a checkout)"
        ) from None
    # an installed wheel has METADATA; a checkout's egg-info (setuptools) the same text as PKG-INFO
    metadata = dist.read_text("METADATA") or dist.read_text("PKG-INFO")
    if metadata is None:
        raise BundleError(f"the installed {DISTRIBUTION} has no metadata; reinstall Kappa with pip")
    files = {"METADATA": metadata.encode()}
    entry_points = dist.read_text("entry_points.txt")
    if entry_points is not None:
        files["entry_points.txt"] = entry_points.encode()
    return files


def _package_files() -> list[tuple[str, Path]]:
    found = []
    for package in PACKAGES:
        module = importlib.import_module(package)
        root = Path(str(module.__file__)).parent
        for path in sorted(root.rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts and path.suffix not in (".pyc", ".pyo"):
                found.append((f"{package}/{path.relative_to(root).as_posix()}", path))
    return found


def _record_line(name: str, data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{name},sha256={digest},{len(data)}"


def _build() -> bytes:
    info = f"{DISTRIBUTION.replace('-', '_')}-{__version__}.dist-info"
    entries: list[tuple[str, bytes]] = [(name, path.read_bytes()) for name, path in _package_files()]
    wheel_meta = (
        f"Wheel-Version: 1.0\nGenerator: kappa {__version__}\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
    )
    metadata = _metadata_files()
    entries += [(f"{info}/{name}", data) for name, data in sorted(metadata.items())]
    entries.append((f"{info}/WHEEL", wheel_meta.encode()))
    entries.append((f"{info}/top_level.txt", "".join(f"{p}\n" for p in PACKAGES).encode()))
    record = [_record_line(name, data) for name, data in entries] + [f"{info}/RECORD,,"]
    entries.append((f"{info}/RECORD", ("\n".join(record) + "\n").encode()))
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, data in entries:
            item = zipfile.ZipInfo(name, date_time=_EPOCH)
            item.external_attr = 0o644 << 16
            item.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(item, data)
    return buffer.getvalue()
