"""``kappa containerize``: the bundle's Dockerfile, built with ``docker`` when it is installed.

The bundle folder is the build context, unchanged (its files are covered by its digest); the
Dockerfile this Kappa renders for it is written beside the repository, under
``$KAPPA_HOME/containerize/NAME/VERSION/``, and given to ``docker build -f``.
"""

from __future__ import annotations

import logging
import os
import re
import shlex
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from kappa.deploy.bundles import verified_bundle
from kappa.deploy.image import ImageSpec, render_dockerfile
from kappa.errors import InputError, KappaError

log = logging.getLogger(__name__)

# docker's reference grammar, simplified: [registry[:port]/]path[:tag]
_COMPONENT = r"[a-z0-9]+([._-]*[a-z0-9]+)*"
_TAG = re.compile(rf"^{_COMPONENT}(:[0-9]+)?(/{_COMPONENT})*(:[A-Za-z0-9_][A-Za-z0-9_.-]{{0,127}})?$")


class DockerBuildError(KappaError):
    """``docker build`` or ``docker push`` failed."""


@dataclass(frozen=True)
class BuildPlan:
    tag: str
    dockerfile: Path
    context: Path

    @property
    def build_command(self) -> list[str]:
        return ["docker", "build", "-f", str(self.dockerfile), "-t", self.tag, str(self.context)]

    @property
    def push_command(self) -> list[str]:
        return ["docker", "push", self.tag]


def default_tag(name: str, version: str) -> str:
    return f"{name.lower()}:{re.sub(r'[^a-z0-9_.-]', '_', version.lower())[:128]}"


def check_tag(tag: str) -> str:
    if not _TAG.match(tag):
        raise InputError(
            f"{tag!r} is not a valid image tag; use [REGISTRY/]NAME[:TAG] in lower case, "
            "e.g. registry.example.com/team/iris:1.0"
        )
    return tag


def plan_build(ref: str, tag: str | None, home: Path) -> BuildPlan:
    """Verify the bundle and write its Dockerfile; nothing is built yet."""
    bundle = verified_bundle(ref)
    manifest = bundle.manifest
    image_tag = check_tag(tag) if tag else default_tag(manifest.name, manifest.version)
    folder = home / "containerize" / manifest.name / manifest.version
    folder.mkdir(parents=True, exist_ok=True)
    dockerfile = folder / "Dockerfile"
    text = render_dockerfile(ImageSpec.of(manifest))
    if (bundle.path / "Dockerfile").read_text() != text:
        log.info("the bundle's own Dockerfile is from another Kappa; building with %s", dockerfile)
    temporary = dockerfile.with_name(f".Dockerfile.{os.getpid()}")
    temporary.write_text(text)
    os.replace(temporary, dockerfile)
    return BuildPlan(image_tag, dockerfile, bundle.path)


def docker_available() -> bool:
    return shutil.which("docker") is not None


def run_docker(command: list[str], plan: BuildPlan) -> None:
    """Run a docker command, its output going to the terminal; a failure names what to do."""
    done = subprocess.run(command, check=False)
    if done.returncode != 0:
        raise DockerBuildError(
            f"`{shlex.join(command[:2])}` failed (exit {done.returncode}; see docker's output above). "
            f"The Dockerfile is {plan.dockerfile}; where Docker runs, build with: "
            f"{shlex.join(plan.build_command)}"
        )
