"""The environment a bundle needs: ``@kappa.env`` settings and pinned requirements."""

from __future__ import annotations

import logging
import platform
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kappa._version import DISTRIBUTION, __version__
from kappa.errors import BundleError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EnvSpec:
    """What ``@kappa.env`` declared."""

    infer_pip_packages: bool = False
    pip_packages: tuple[str, ...] = ()
    requirements_txt_file: str | None = None
    conda_channels: tuple[str, ...] = ()
    conda_dependencies: tuple[str, ...] = ()
    conda_override_channels: bool = False
    docker_base_image: str | None = None
    setup_sh: str | None = None


def python_version() -> str:
    return platform.python_version()


def _canonical(name: str) -> str:
    from packaging.utils import canonicalize_name

    return str(canonicalize_name(name))


def _installed_version(distribution: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(distribution)
    except PackageNotFoundError:
        return None


def _pin(requirement: str) -> tuple[str, str]:
    """``(canonical name, requirement)``; bare names get the installed version pinned."""
    from packaging.requirements import InvalidRequirement, Requirement

    try:
        parsed = Requirement(requirement)
    except InvalidRequirement as exc:
        raise BundleError(f"invalid pip requirement {requirement!r} in @kappa.env: {exc}") from None
    name = _canonical(parsed.name)
    if not parsed.specifier and not parsed.url:
        installed = _installed_version(parsed.name)
        if installed is not None:
            extras = f"[{','.join(sorted(parsed.extras))}]" if parsed.extras else ""
            marker = f"; {parsed.marker}" if parsed.marker else ""
            return name, f"{parsed.name}{extras}=={installed}{marker}"
    return name, str(parsed)


def distributions_for(top_level_imports: Iterable[str]) -> list[str]:
    """Installed distributions that provide these top-level module names."""
    from importlib.metadata import packages_distributions

    mapping = packages_distributions()
    found: list[str] = []
    for module in sorted(set(top_level_imports)):
        dists = mapping.get(module)
        if not dists:
            log.warning(
                "module %r is imported by the service but no installed distribution provides it", module
            )
            continue
        found.extend(dists)
    return found


# Bundles saved before Kappa took its own name on the package index pinned ``kappa``.
LEGACY_NAMES = {"kappa": DISTRIBUTION}


def kappa_pin() -> str:
    """The requirement on the Kappa that is saving the bundle (the bundle carries its wheel), with
    ``online``: what the bundle's image runs (`kappa serve`) and what `pip install <bundle>` gives."""
    return f"{DISTRIBUTION}[online]=={__version__}"


def is_kappa_requirement(line: str) -> bool:
    from packaging.requirements import InvalidRequirement, Requirement

    try:
        name = _canonical(Requirement(line).name)
    except InvalidRequirement:
        return False
    return name == _canonical(DISTRIBUTION) or name in LEGACY_NAMES


def requirements(spec: EnvSpec, imports: Iterable[str], artifact_packages: Iterable[str]) -> list[str]:
    """The pinned requirement lines of a bundle, Kappa's own first."""
    kappa = _canonical(DISTRIBUTION)
    if spec.requirements_txt_file:
        path = Path(spec.requirements_txt_file)
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except OSError as exc:
            raise BundleError(f"cannot read requirements_txt_file {str(path)!r}: {exc.strerror}") from None
        given = [line.strip() for line in lines if line.strip() and not line.strip().startswith("#")]
        return [kappa_pin(), *(line for line in given if not is_kappa_requirement(line))]
    pinned: dict[str, str] = {kappa: kappa_pin()}
    wanted = list(artifact_packages)
    if spec.infer_pip_packages:
        wanted += distributions_for(imports)
    for requirement in wanted:
        name, line = _pin(requirement)
        pinned.setdefault(name, line)
    for requirement in spec.pip_packages:  # explicit ones win (but Kappa is the one saving)
        if is_kappa_requirement(requirement):
            continue
        name, line = _pin(requirement)
        pinned[name] = line
    return [pinned[kappa], *sorted(v for k, v in pinned.items() if k != kappa)]


def conda_env(spec: EnvSpec, name: str) -> dict[str, Any] | None:
    if not spec.conda_channels and not spec.conda_dependencies:
        return None
    channels = list(spec.conda_channels)
    if not spec.conda_override_channels:
        channels.append("defaults")
    return {
        "name": name,
        "channels": channels,
        "dependencies": [
            f"python={python_version()}",
            *spec.conda_dependencies,
            "pip",
            {"pip": ["-r requirements.txt"]},
        ],
    }


def environment_differences(pins: Iterable[str]) -> list[str]:
    """How the running interpreter differs from a bundle's pinned requirements (empty if it matches)."""
    from packaging.requirements import InvalidRequirement, Requirement

    differences = []
    for line in pins:
        try:
            requirement = Requirement(line)
        except InvalidRequirement:
            continue
        if requirement.marker is not None and not requirement.marker.evaluate():
            continue
        installed = _installed_version(requirement.name)
        if installed is None and _canonical(requirement.name) in LEGACY_NAMES:
            installed = _installed_version(LEGACY_NAMES[_canonical(requirement.name)])
        if installed is None:
            differences.append(
                f"{requirement.name}: bundle needs {requirement.specifier or 'it'}, not installed"
            )
        elif requirement.specifier and not requirement.specifier.contains(installed, prereleases=True):
            differences.append(
                f"{requirement.name}: bundle needs {requirement.specifier}, installed {installed}"
            )
    return differences
