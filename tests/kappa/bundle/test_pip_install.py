"""A bundle folder is pip-installable and installs a console script named after the service."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest


@pytest.mark.slow
def test_pip_install_gives_a_console_script(iris_service, tmp_path):
    bundle = iris_service.save_to_dir(str(tmp_path / "bundle"))
    before = sorted(p.relative_to(bundle) for p in Path(bundle).rglob("*"))
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
    # built elsewhere: no build/ or *.egg-info in the bundle
    assert sorted(p.relative_to(bundle) for p in Path(bundle).rglob("*")) == before
    script = target / "bin" / "IrisClassifier"
    assert script.exists()
    env = {**os.environ, "PYTHONPATH": str(target)}
    rows = "[[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]]"
    for verbs in (["run", "predict"], ["predict"]):  # the documented form, and the earlier one
        out = subprocess.run(
            [sys.executable, str(script), *verbs, "--input", rows],
            capture_output=True,
            text=True,
            env=env,
            cwd=tmp_path,
        )
        assert out.returncode == 0, out.stderr
        assert json.loads(out.stdout) == [0, 2]  # one output column: its values, as documented
    data = tmp_path / "data.csv"
    data.write_text("a,b,c,d\n5.1,3.5,1.4,0.2\n6.7,3.0,5.2,2.3\n")
    out = subprocess.run(
        [sys.executable, str(script), "run", "predict", "--input-file", str(data)],
        capture_output=True, text=True, env=env, cwd=tmp_path,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == [0, 2]
    imported = subprocess.run(
        [sys.executable, "-c", "import IrisClassifier; svc = IrisClassifier.load(); print(svc.version)"],
        capture_output=True, text=True, env=env, cwd=tmp_path,
    )  # fmt: skip
    assert imported.returncode == 0 and imported.stdout.strip() == iris_service.version, imported.stderr
    info = subprocess.run([sys.executable, str(script), "--info"], capture_output=True, text=True, env=env)
    assert json.loads(info.stdout)["version"] == iris_service.version
    bad = subprocess.run(
        [sys.executable, str(script), "predict", "--input", "[[1,"], capture_output=True, text=True, env=env
    )
    assert bad.returncode != 0 and "not valid JSON" in bad.stderr and "Traceback" not in bad.stderr
    import kappa

    assert kappa.load(bundle).version == iris_service.version  # building left the bundle intact
