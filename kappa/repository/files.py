"""Bundle files under an fsspec base URL (a local folder, ``s3://bucket/prefix``, ...)."""

from __future__ import annotations

import hashlib
import os
import secrets
import shutil
from pathlib import Path
from typing import Any

from kappa.bundle.integrity import not_writable_by_others
from kappa.errors import MissingDependencyError, RepositoryError

MANIFEST = "kappa.yml"


def is_local(url: str) -> bool:
    return "://" not in url or url.startswith("file://")


def local_part(url: str) -> Path:
    return Path(url.removeprefix("file://")).expanduser()


def filesystem(url: str) -> tuple[Any, str]:
    """The fsspec filesystem for ``url`` and the path within it."""
    from fsspec.core import url_to_fs

    from kappa.repository.s3session import url_options

    try:
        fs, path = url_to_fs(url, **url_options(url))
    except (ImportError, ValueError) as exc:
        raise MissingDependencyError(
            f"cannot open {url!r}: {exc} (for s3:// run `pip install 'kappa-engine[s3]'`)"
        ) from None
    return fs, str(path)


def download(url: str, target: Path, only: list[str] | None = None) -> Path:
    """Copy a remote bundle folder (or only the files ``only`` names) to ``target``: staged,
    then one rename."""
    fs, root = filesystem(url)
    fs.invalidate_cache()  # another process may have written it since this one last looked
    if not fs.exists(f"{root.rstrip('/')}/{MANIFEST}"):
        raise RepositoryError(f"no bundle at {url!r}: it has no {MANIFEST}")
    staging = target.parent / f".{target.name}.download-{secrets.token_hex(4)}"
    staging.mkdir(parents=True)
    try:
        if only is None:
            fs.get(root.rstrip("/") + "/", str(staging) + "/", recursive=True)
        else:
            for rel in only:
                (staging / rel).parent.mkdir(parents=True, exist_ok=True)
                fs.get_file(f"{root.rstrip('/')}/{rel}", str(staging / rel))
        if not (staging / MANIFEST).exists():
            raise RepositoryError(f"downloading {url!r} did not bring its {MANIFEST}")
        try:
            os.rename(staging, target)
        except OSError:  # another process fetched it first
            if not (target / MANIFEST).exists():
                raise
            shutil.rmtree(staging, ignore_errors=True)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return target


def copy_folder(source: Path, target: Path, only: list[str] | None = None) -> None:
    """Copy a bundle folder (or only the files ``only`` names) to ``target``: staged, one rename."""
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = target.parent / f".{target.name}.copy-{secrets.token_hex(4)}"
    try:
        if only is None:
            shutil.copytree(source, staging, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            for rel in only:
                (staging / rel).parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(source / rel, staging / rel)
        not_writable_by_others(staging)
        os.rename(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def upload(local_dir: Path, url: str, only: list[str] | None = None) -> None:
    """Copy a bundle folder (or only the files ``only`` names) to ``url``, the manifest last so
    readers never see half a bundle."""
    fs, root = filesystem(url)
    root = root.rstrip("/")
    if only is None:
        files = sorted(p for p in local_dir.rglob("*") if p.is_file() and p.name != MANIFEST)
    else:
        files = [local_dir / rel for rel in only if rel != MANIFEST]
    for file in files:
        fs.put_file(str(file), f"{root}/{file.relative_to(local_dir).as_posix()}")
    fs.put_file(str(local_dir / MANIFEST), f"{root}/{MANIFEST}")


def remove(url: str) -> None:
    if is_local(url):
        shutil.rmtree(local_part(url), ignore_errors=True)
        return
    fs, root = filesystem(url)
    fs.invalidate_cache()
    if fs.exists(root):
        fs.rm(root, recursive=True)


def remove_partial(url: str) -> None:
    """Remove what a save or import into ``url`` that was killed may have left: the files at
    ``url``, and beside a local folder its staging folders (``.VERSION.staging-*`` of
    kappa.bundle.save, ``.VERSION.copy-*`` of :func:`copy_folder`)."""
    remove(url)
    if is_local(url):
        folder = local_part(url)
        for pattern in (f".{folder.name}.staging-*", f".{folder.name}.copy-*"):
            for staging in folder.parent.glob(pattern):
                shutil.rmtree(staging, ignore_errors=True)


def cache_dir() -> Path:
    from kappa.settings import default_home

    return default_home() / "cache"


def fetch_bundle(url: str) -> Path:
    """A local copy of the bundle at ``url``, kept in ``$KAPPA_HOME/cache``."""
    key = hashlib.sha256(url.rstrip("/").encode()).hexdigest()[:24]
    target = cache_dir() / key
    if (target / MANIFEST).exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    return download(url, target)
