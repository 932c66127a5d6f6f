"""Which pip `kappa pack-env` installs with: this interpreter's own (``--python``) or the target's."""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
import venv
import zipfile
from importlib.metadata import version
from pathlib import Path

import pytest
from packaging.version import Version

from kappa.deploy.packenv import _pip, pip_command

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def bare_python(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The Python of a new environment without pip."""
    folder = tmp_path_factory.mktemp("bare") / "env"
    venv.EnvBuilder(with_pip=False).create(folder)
    return str(folder / "bin" / "python")


def tiny_wheel(folder: Path) -> Path:
    """A wheel of one module, ``kappa_pip_probe``, built by hand (no build backend, no index)."""
    path = folder / "kappa_pip_probe-1.0-py3-none-any.whl"
    files = {
        "kappa_pip_probe.py": "WHERE = 'installed'\n",
        "kappa_pip_probe-1.0.dist-info/METADATA": "Metadata-Version: 2.1\nName: kappa-pip-probe\n"
        "Version: 1.0\n",
        "kappa_pip_probe-1.0.dist-info/WHEEL": "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\n"
        "Tag: py3-none-any\n",
    }
    record = "".join(f"{name},,\n" for name in files) + "kappa_pip_probe-1.0.dist-info/RECORD,,\n"
    with zipfile.ZipFile(path, "w") as wheel:
        for name, text in {**files, "kappa_pip_probe-1.0.dist-info/RECORD": record}.items():
            wheel.writestr(name, text)
    return path


def test_this_interpreters_pip_installs_into_the_target_when_it_can():
    expected = (
        [sys.executable, "-m", "pip", "--python", "/target/python"]
        if Version(version("pip")) >= Version("22.3")
        else ["/target/python", "-m", "pip"]
    )
    assert pip_command("/target/python") == expected


def test_a_pip_reached_only_through_pythonpath_is_not_used(bare_python):
    """pip drops PYTHONPATH when it runs: a pip found only through it could not run --python."""
    here = sysconfig.get_path("purelib")
    found = subprocess.run(
        [bare_python, "-c", "from kappa.deploy import packenv; print(packenv.pip_command('/target/python'))"],
        env={**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), here])},
        capture_output=True,
        text=True,
        check=True,
    )
    assert found.stdout.strip() == str(["/target/python", "-m", "pip"])


def test_the_requirements_land_in_the_target_even_from_inside_a_pip_run(bare_python, tmp_path, monkeypatch):
    """Under pip's own subprocess marker, pip ignores --python and would install into this environment."""
    monkeypatch.setenv("_PIP_RUNNING_IN_SUBPROCESS", "1")
    if pip_command(bare_python)[0] == bare_python:
        pytest.skip("this interpreter's pip is older than 22.3: pack-env uses the target's own pip")
    _pip(bare_python, ["--no-index", "--no-deps", str(tiny_wheel(tmp_path))], tmp_path)
    probe = "import kappa_pip_probe; print(kappa_pip_probe.WHERE)"
    there = subprocess.run([bare_python, "-c", probe], capture_output=True, text=True)
    assert there.stdout.strip() == "installed", there.stderr
    assert not list(Path(sysconfig.get_path("purelib")).glob("kappa_pip_probe*")), "installed here instead"
