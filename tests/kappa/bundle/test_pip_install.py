"""A bundle folder is pip-installable and installs a console script named after the service."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest


@pytest.mark.slow
def test_pip_install_gives_a_console_script(iris_service, tmp_path):
    bundle = iris_service.save_to_dir(str(tmp_path / "bundle"))
    target = tmp_path / "site"
    install = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
            "--target",
            str(target),
            bundle,
        ],
        capture_output=True,
        text=True,
    )
    assert install.returncode == 0, install.stderr
    script = target / "bin" / "IrisClassifier"
    assert script.exists()
    env = {**os.environ, "PYTHONPATH": str(target)}
    out = subprocess.run(
        [sys.executable, str(script), "predict", "--input", "[[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]]"],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
    )
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == [0, 2]  # one output column: its values, as documented
    info = subprocess.run([sys.executable, str(script), "--info"], capture_output=True, text=True, env=env)
    assert json.loads(info.stdout)["version"] == iris_service.version
    bad = subprocess.run(
        [sys.executable, str(script), "predict", "--input", "[[1,"], capture_output=True, text=True, env=env
    )
    assert bad.returncode != 0 and "not valid JSON" in bad.stderr and "Traceback" not in bad.stderr
    import kappa

    assert kappa.load(bundle).version == iris_service.version  # building left the bundle intact
