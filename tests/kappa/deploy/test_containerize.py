"""`kappa containerize`: the bundle's Dockerfile (hadolint-clean), built with docker or printed, and
the same install steps proven in a fresh virtualenv."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

import kappa
from kappa.cli.main import cli
from kappa.deploy.containerize import check_tag, default_tag
from kappa.deploy.image import BUNDLE_DIR, install_target
from kappa.errors import InputError

HADOLINT = str(Path(sys.executable).parent / "hadolint")


def invoke(*args: str, path: str | None = None):
    env = {"PATH": path} if path is not None else {}
    return CliRunner().invoke(cli, list(args), env=env, catch_exceptions=False)


def hadolint(dockerfile: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([HADOLINT, "--no-color", str(dockerfile)], capture_output=True, text=True)


def test_the_bundle_dockerfile_passes_hadolint(iris_service, tmp_path):
    bundle = Path(iris_service.save_to_dir(str(tmp_path / "b")))
    text = (bundle / "Dockerfile").read_text()
    lint = hadolint(bundle / "Dockerfile")
    assert lint.returncode == 0, lint.stdout + lint.stderr
    assert "FROM python:3.11-slim" in text or re.search(r"^FROM python:\d+\.\d+-slim$", text, re.M)
    assert re.search(r"^USER 10001$", text, re.M)  # not root
    assert "HEALTHCHECK" in text and "/livez" in text
    serve = 'CMD ["kappa", "serve", "/bundle", "--host", "0.0.0.0", "--port", "5000"]'
    assert text.rstrip().splitlines()[-1] == serve


def test_base_image_setup_script_and_conda_are_honoured(make_module, iris, tmp_path):
    module = make_module(
        """
        import kappa
        from kappa.adapters import DataframeInput
        from kappa.frameworks.sklearn import SklearnModelArtifact

        @kappa.env(docker_base_image="mycompany/base:v123", setup_sh="apt-get --version",
                   conda_channels=["h2oai"], conda_dependencies=["h2o==3.24.0.2"],
                   conda_override_channels=True)
        @kappa.artifacts([SklearnModelArtifact("model")])
        class Custom(kappa.BentoService):
            @kappa.api(input=DataframeInput(), batch=True)
            def predict(self, df):
                return self.artifacts.model.predict(df)
        """
    )
    bundle = Path(module.Custom().pack("model", iris[2]).save_to_dir(str(tmp_path / "b")))
    text = (bundle / "Dockerfile").read_text()
    assert "FROM mycompany/base:v123" in text
    assert "sys.version_info[:2] == (3, 11)" in text  # a custom base must bring the bundle's Python
    assert "COPY setup.sh setup.sh\nRUN bash setup.sh" in text
    assert "RUN conda install --yes --override-channels -c h2oai h2o==3.24.0.2 && conda clean -afy" in text
    lint = hadolint(bundle / "Dockerfile")
    assert lint.returncode == 0, lint.stdout + lint.stderr


def test_without_docker_it_prints_the_dockerfile_and_the_build_command(iris_service, tmp_path, kappa_home):
    bundle = iris_service.save_to_dir(str(tmp_path / "b"))
    tag = "registry.example.com/team/iris:1.0"
    result = invoke("containerize", bundle, "-t", tag, "--push", path="/nonexistent")
    assert result.exit_code == 0, result.output
    build, push = result.stdout.strip().splitlines()[-2:]
    words = shlex.split(build)
    assert words[:2] == ["docker", "build"] and words[-3:] == ["-t", tag, bundle]
    dockerfile = Path(words[words.index("-f") + 1])
    assert dockerfile.is_relative_to(kappa_home) and str(dockerfile) in result.stderr
    assert dockerfile.read_text() == (Path(bundle) / "Dockerfile").read_text()  # this Kappa saved it
    assert push == "docker push registry.example.com/team/iris:1.0"
    assert kappa.load(bundle).version == iris_service.version  # the bundle itself is untouched


def test_a_bundle_failing_its_digest_is_refused_before_anything_is_built(iris_service, tmp_path, kappa_home):
    bundle = Path(iris_service.save_to_dir(str(tmp_path / "b")))
    (bundle / "src").chmod(0o755)
    source = next((bundle / "src").rglob("*.py"))
    source.chmod(0o644)
    source.write_text(source.read_text() + "\n# changed\n")
    result = invoke("containerize", str(bundle), path="/nonexistent")
    assert result.exit_code == 2
    assert result.stderr.count("\n") == 1 and "modified after it was saved" in result.stderr
    assert not (kappa_home / "containerize").exists()
    bad_tag = invoke("containerize", iris_service.save_to_dir(str(tmp_path / "ok")), "-t", "Not A Tag")
    assert bad_tag.exit_code == 2 and "not a valid image tag" in bad_tag.stderr


def test_image_tags():
    assert default_tag("IrisClassifier", "20261130T065942Z_F1F3") == "irisclassifier:20261130t065942z_f1f3"
    assert check_tag("localhost:5000/a/b-c:v1.2_x") == "localhost:5000/a/b-c:v1.2_x"
    for bad in ("UPPER:1", "a b", "-lead", "a:" + "x" * 129):
        with pytest.raises(InputError):
            check_tag(bad)


@pytest.mark.skipif(shutil.which("docker") is None, reason="docker is not installed on this machine")
def test_with_docker_it_builds_or_says_why_not(iris_service, tmp_path):
    bundle = iris_service.save_to_dir(str(tmp_path / "b"))
    daemon = subprocess.run(["docker", "info"], capture_output=True).returncode == 0
    result = invoke("containerize", bundle, "-t", "kappa-test/iris:ci")
    if not daemon:  # the docker client is here, its daemon is not: one clear line, exit 1
        assert result.exit_code == 1
        assert "`docker build` failed" in result.stderr and "docker build -f " in result.stderr
        return
    assert result.exit_code == 0, result.output
    shown = subprocess.run(
        ["docker", "image", "inspect", "-f", "{{.Config.User}} {{.Config.Healthcheck.Test}}",
         "kappa-test/iris:ci"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert shown.stdout.startswith("10001 ") and "/livez" in shown.stdout


def test_the_image_installs_the_bundle_as_pack_env_does(iris_service, tmp_path):
    """The image installs the bundle folder with pip, as `kappa pack-env` does in a fresh virtualenv
    (tests/kappa/deploy/test_pack_env.py proves that install there, and serves from it)."""
    bundle = Path(iris_service.save_to_dir(str(tmp_path / "b")))
    lines = (bundle / "Dockerfile").read_text().splitlines()
    installs = [line for line in lines if line.startswith("RUN pip install")]
    target = install_target(BUNDLE_DIR)
    assert installs == [f'RUN pip install --no-cache-dir "{target}${{KAPPA_EXTRAS:+[$KAPPA_EXTRAS]}}" \\']
    assert install_target(BUNDLE_DIR, ["spark"]) == f"{BUNDLE_DIR}[spark]"
