"""``kappa pack-env``: a relocatable Python environment with a bundle's packages and Kappa, for executors
that start with nothing (``spark-submit --archives env.tar.gz#env``, Dask workers, YARN containers).

A fresh virtual environment gets the bundle's pinned requirements (Kappa from the wheel the bundle
carries) and is packed with ``venv-pack``. Like every virtual environment it runs on the Python it
was built with: the machines that unpack it need that Python at the same path (the same base image).
"""

from __future__ import annotations

import logging
import os
import platform
import subprocess
import sys
import tempfile
import venv
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from kappa.deploy.bundles import verified_bundle
from kappa.deploy.image import install_target
from kappa.errors import InputError, KappaError, missing_dependency

log = logging.getLogger(__name__)

FORMATS = (".tar.gz", ".tgz", ".zip")  # what spark-submit --archives (and YARN) unpack
EXTRAS = ("spark", "dask", "airflow")  # the bundle's extras; Kappa's `online` is always in


@dataclass(frozen=True)
class PackedEnv:
    path: Path
    size: int
    python: str
    packages: int


def check_request(output: Path, extras: Sequence[str], overwrite: bool) -> None:
    if not output.name.endswith(FORMATS):
        raise InputError(
            f"{str(output)!r}: name the archive with one of {', '.join(FORMATS)} (e.g. env.tar.gz)"
        )
    unknown = sorted(set(extras) - set(EXTRAS))
    if unknown:
        raise InputError(f"unknown extra(s) {unknown}; choose from {list(EXTRAS)}")
    if output.exists() and not overwrite:
        raise InputError(f"{str(output)!r} already exists; pass --overwrite to replace it")
    if not output.parent.is_dir():
        raise InputError(f"{str(output.parent)!r} is not a folder")


def pack_env(
    ref: str, output: Path, extras: Sequence[str] = (), overwrite: bool = False, compress_level: int = 4
) -> PackedEnv:
    """Build and pack the environment of bundle ``ref`` into ``output`` (written whole or not at all)."""
    check_request(output, extras, overwrite)
    bundle = verified_bundle(ref)
    wanted = ".".join(bundle.manifest.python_version.split(".")[:2])
    running = ".".join(platform.python_version().split(".")[:2])
    if wanted != running:
        raise InputError(
            f"bundle {bundle.manifest.tag} was saved with Python {wanted}; run `kappa pack-env` with Python "
            f"{wanted} (a packed environment runs on the interpreter it is built with, here {running})"
        )
    try:
        import venv_pack
    except ImportError:
        raise missing_dependency("venv-pack", "deploy", "kappa pack-env") from None
    with tempfile.TemporaryDirectory(prefix="kappa-pack-env-") as tmp:
        prefix = Path(tmp) / "env"
        log.info("creating a virtual environment for %s", bundle.manifest.tag)
        venv.EnvBuilder(with_pip=True, symlinks=True).create(prefix)
        python = str(prefix / "bin" / "python")
        _pip(python, [install_target(str(bundle.path), extras)], cwd=bundle.path)  # as the image does
        packages = len(list((prefix / "lib").glob("python*/site-packages/*.dist-info")))
        partial = output.with_name(f".partial-{os.getpid()}-{output.name}")  # venv-pack reads the suffix
        log.info("packing %d packages into %s", packages, output)
        try:
            venv_pack.pack(prefix=str(prefix), output=str(partial), compress_level=compress_level, force=True)
            os.replace(partial, output)
            output.chmod(0o644)
        except venv_pack.VenvPackException as exc:
            raise KappaError(f"venv-pack could not pack the environment: {exc}") from None
        finally:
            partial.unlink(missing_ok=True)
    return PackedEnv(output, output.stat().st_size, sys.base_prefix, packages)


def pip_command(python: str) -> list[str]:
    """pip for the environment of ``python``: this interpreter's own pip where it can install into
    another interpreter (``--python``, pip 22.3 and later), which is usually much newer and faster
    than the one ``venv`` puts in (a third less time for pandas, pyarrow and scikit-learn); else the
    environment's. Only a pip installed in this interpreter counts (pip runs without PYTHONPATH)."""
    import importlib.util
    import sysconfig
    from importlib.metadata import PackageNotFoundError, version

    from packaging.version import InvalidVersion, Version

    spec = importlib.util.find_spec("pip")
    installed = {Path(sysconfig.get_path(key)).resolve() for key in ("purelib", "platlib")}
    if spec is not None and spec.origin and Path(spec.origin).resolve().parent.parent in installed:
        try:
            if Version(version("pip")) >= Version("22.3"):
                return [sys.executable, "-m", "pip", "--python", python]
        except (PackageNotFoundError, InvalidVersion):
            pass
    return [python, "-m", "pip"]


def _pip(python: str, arguments: list[str], cwd: Path) -> None:
    # pip ignores --python in a pip it runs itself (_PIP_RUNNING_IN_SUBPROCESS): it would install here
    unset = ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME", "_PIP_RUNNING_IN_SUBPROCESS")
    env = {k: v for k, v in os.environ.items() if k not in unset}
    done = subprocess.run(
        # compiled: every executor's Python workers import from the archive; without .pyc files each
        # would compile pandas, pyarrow and the model's packages again
        [*pip_command(python), "install", "--quiet", *arguments],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        tail = "\n".join(line for line in done.stderr.splitlines() if "WARNING: Location" not in line)[-2000:]
        raise KappaError(f"pip could not install the bundle's requirements:\n{tail}")
