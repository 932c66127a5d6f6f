"""Every bundle carries the wheel of the Kappa that saved it and installs from the package index alone."""

from __future__ import annotations

import base64
import hashlib
import os
import subprocess
import venv
import zipfile
from pathlib import Path

import pytest

import kappa
from kappa.bundle.env import environment_differences
from kappa.bundle.wheel import wheel_filename
from kappa.errors import BundleIntegrityError

WHEEL = wheel_filename()


def test_a_bundle_carries_the_kappa_wheel_it_was_saved_with(iris_service, tmp_path):
    first = Path(iris_service.save_to_dir(str(tmp_path / "one")))
    second = Path(iris_service.save_to_dir(str(tmp_path / "two")))
    wheel = first / "env" / WHEEL
    assert wheel.read_bytes() == (second / "env" / WHEEL).read_bytes()  # deterministic bytes
    sha = hashlib.sha256(wheel.read_bytes()).hexdigest()
    manifest = kappa.load(str(first)).manifest
    assert any(f.path == f"env/{WHEEL}" and f.sha256 == sha for f in manifest.files)  # in the digest
    assert f'#sha256=" + {sha!r}' in (first / "setup.py").read_text()  # pip checks it too
    lines = (first / "env" / "requirements.txt").read_text().splitlines()
    assert lines[:2] == ["--find-links .", f"kappa-engine[online]=={kappa.__version__}"]
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        info = f"kappa_engine-{kappa.__version__}.dist-info"
        assert {"kappa/__init__.py", "kappa_batch/scoring.py", "kappa_online/app.py"} <= names
        assert not any("__pycache__" in n for n in names)
        assert "Name: kappa-engine" in archive.read(f"{info}/METADATA").decode()
        assert "kappa = kappa.cli.main:main" in archive.read(f"{info}/entry_points.txt").decode()
        for line in archive.read(f"{info}/RECORD").decode().splitlines():
            name, digest, size = line.split(",")
            if digest:
                data = archive.read(name)
                assert (
                    digest
                    == "sha256="
                    + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
                )
                assert int(size) == len(data)
        assert archive.read("kappa/_version.py") == Path(kappa.__file__).with_name("_version.py").read_bytes()


def test_a_changed_wheel_fails_the_bundle_digest(iris_service, tmp_path):
    path = Path(iris_service.save_to_dir(str(tmp_path / "b")))
    wheel = path / "env" / WHEEL
    wheel.chmod(0o644)
    with open(wheel, "ab") as handle:
        handle.write(b"x")
    with pytest.raises(BundleIntegrityError, match=WHEEL):
        kappa.load(str(path))


def test_bundles_that_pinned_the_old_name_still_match_this_kappa():
    assert environment_differences([f"kappa=={kappa.__version__}"]) == []
    assert environment_differences([f"kappa-engine[online]=={kappa.__version__}"]) == []
    assert environment_differences(["kappa==0.0.1"]) == [
        f"kappa: bundle needs ==0.0.1, installed {kappa.__version__}"
    ]


def _fresh_venv(folder: Path) -> Path:
    venv.EnvBuilder(with_pip=True, system_site_packages=False).create(folder)
    return folder / "bin"


def _pip_install(bin_dir: Path, target: str) -> subprocess.CompletedProcess[str]:
    # nothing but the package index: no site packages of ours, no --find-links to our venv
    return subprocess.run(
        [str(bin_dir / "python"), "-m", "pip", "install", "-q", "--no-compile", target],
        capture_output=True,
        text=True,
        env={k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")},
        cwd=bin_dir.parent,
    )


@pytest.mark.slow
def test_pip_refuses_a_kappa_wheel_that_is_not_the_one_the_bundle_recorded(iris_service, tmp_path):
    """pip's own check of the wheel (setup.py's sha256), for copies installed without Kappa's digest
    check; installing intact bundles into fresh environments: tests/kappa/deploy/test_pack_env.py."""
    bundle = iris_service.save_to_dir(str(tmp_path / "bundle"))
    tampered = tmp_path / "tampered"
    subprocess.run(["cp", "-r", bundle, str(tampered)], check=True)
    (tampered / "env" / WHEEL).chmod(0o644)
    with open(tampered / "env" / WHEEL, "ab") as handle:
        handle.write(b"x")
    refused = _pip_install(_fresh_venv(tmp_path / "venv"), str(tampered))
    assert refused.returncode != 0 and "HASHES" in refused.stderr
