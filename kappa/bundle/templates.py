"""Files generated into every bundle: ``setup.py``, ``__init__.py`` (the Dockerfile: kappa.deploy.image)."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from kappa._version import DISTRIBUTION
from kappa.bundle.env import kappa_pin

if TYPE_CHECKING:
    from kappa.bundle.wheel import KappaWheel

SETUP_PY = '''\
"""pip-installable Kappa bundle {name}:{version} (generated; do not edit)."""
import atexit
import shutil
import tempfile
from pathlib import Path

from setuptools import setup

HERE = Path(__file__).resolve().parent
# Build outside the bundle: pip builds a local folder in place, and a bundle holds exactly
# the files it was saved with (no build/ or *.egg-info may appear in it).
BUILD = tempfile.mkdtemp(prefix="kappa-bundle-build-")
atexit.register(shutil.rmtree, BUILD, ignore_errors=True)
PACKAGE = {package!r}
# The Kappa that saved the bundle travels in env/ as a wheel; pip checks it against this digest.
KAPPA_WHEEL = (HERE / "env" / {wheel!r}).as_uri() + "#sha256=" + {wheel_sha256!r}


def kappa(extra):
    return "{distribution}[" + extra + "] @ " + KAPPA_WHEEL


REQUIREMENTS = [kappa("online")] + [
    line.strip()
    for line in (HERE / "env" / "requirements.txt").read_text().splitlines()
    if line.strip() and not line.startswith(("#", "-", {kappa_pin!r}))
]

setup(
    name={name!r},
    version={pep440!r},
    description="Kappa bundle {name}:{version}",
    packages=[PACKAGE],
    package_dir={{PACKAGE: "."}},
    package_data={{PACKAGE: ["kappa.yml", "Dockerfile", "setup.sh", "setup.py", "src/**/*", "artifacts/**/*",
                            "env/*", "web/**/*"]}},
    include_package_data=True,
    install_requires=REQUIREMENTS,
    extras_require={{extra: [kappa(extra)] for extra in ("spark", "dask", "airflow")}},
    python_requires=">={python_major_minor}",
    entry_points={{"console_scripts": [{script!r}]}},
    options={{"build": {{"build_base": BUILD + "/build"}}, "egg_info": {{"egg_base": BUILD}}}},
)
'''

INIT_PY = '''\
"""Kappa bundle {name}:{version}, importable once the folder is pip-installed."""
from pathlib import Path

BUNDLE_DIR = Path(__file__).resolve().parent


def load():
    """Load this bundle's service."""
    import kappa

    return kappa.load(str(BUNDLE_DIR))


def main(argv=None):
    """Console script {name}: the `kappa` verbs for this bundle (`{name} run predict --input ...`)."""
    from kappa_batch.bundle_cli import main as run

    return run(str(BUNDLE_DIR), argv)
'''


def package_name(service_name: str) -> str:
    """The import name of the installed bundle: the service's own name, as documented
    (``import IrisClassifier; IrisClassifier.load()``), made a Python identifier if need be;
    ``kappa_bundle_<name>`` when that would shadow a standard or Kappa module (``json``, ``kappa``)."""
    import sys

    name = re.sub(r"[^0-9a-zA-Z_]", "_", service_name)
    if name.lower() in {m.lower() for m in sys.stdlib_module_names} | {
        "kappa",
        "kappa_batch",
        "kappa_online",
    }:
        return f"kappa_bundle_{name.lower()}"
    return name


def pep440(version: str) -> str:
    local = re.sub(r"[^A-Za-z0-9]+", ".", version).strip(".").lower() or "0"
    return f"0+{local}"


def render_setup_py(name: str, version: str, python_major_minor: str, wheel: KappaWheel) -> str:
    """``setup.py``: ``pip install BUNDLE`` installs the bundle as a package, Kappa (with ``online``)
    from the wheel in ``env/`` and the pinned requirements; extras ``spark``, ``dask``, ``airflow``."""
    package = package_name(name)
    return SETUP_PY.format(
        name=name,
        version=version,
        package=package,
        pep440=pep440(version),
        python_major_minor=python_major_minor,
        script=f"{name}={package}:main",
        wheel=wheel.filename,
        wheel_sha256=wheel.sha256,
        distribution=DISTRIBUTION,
        kappa_pin=kappa_pin(),
    )


def render_init_py(name: str, version: str) -> str:
    return INIT_PY.format(name=name, version=version)
