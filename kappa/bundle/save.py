"""Write a service as a bundle: stage everything, write ``kappa.yml`` last, rename once."""

from __future__ import annotations

import json
import logging
import os
import secrets
import shutil
from collections.abc import Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kappa._version import __version__
from kappa.bundle import env as envmod
from kappa.bundle import manifest as mf
from kappa.bundle.integrity import bundle_digest, describe_tree, not_writable_by_others
from kappa.bundle.modules import find_service_source
from kappa.bundle.templates import render_init_py, render_setup_py
from kappa.bundle.version import new_version, validate_name, validate_version
from kappa.bundle.wheel import kappa_wheel, write_kappa_wheel
from kappa.deploy.image import ImageSpec, render_dockerfile
from kappa.errors import BundleError

if TYPE_CHECKING:
    from kappa.service import BentoService

log = logging.getLogger(__name__)


def _jsonable(value: Any) -> Any:
    """Artifact metadata as plain YAML-safe values (numpy scalars become numbers)."""
    from kappa.adapters._json import dumps
    from kappa.frameworks.base import thaw

    try:
        return json.loads(dumps(thaw(value)))
    except TypeError as exc:
        raise BundleError(f"artifact metadata must be JSON-like: {exc}") from None


def _api_entries(service: BentoService) -> list[mf.ApiEntry]:
    entries = []
    for api in service.inference_apis.values():
        entries.append(
            mf.ApiEntry(
                name=api.name,
                input_type=api.input_adapter.describe(),
                input_config=api.input_adapter.config(),
                output_type=api.output_adapter.describe(),
                output_config=api.output_adapter.config(),
                batch=api.batch,
                mb_max_batch_size=api.mb_max_batch_size,
                mb_max_latency=api.mb_max_latency,
                doc=api.doc,
                input_schema=mf.schema_to_dict(api.input_adapter.arrow_schema()),
                output_schema=mf.schema_to_dict(api.output_adapter.arrow_schema()),
            )
        )
    return entries


def _write_artifacts(service: BentoService, staging: Path) -> list[mf.ArtifactEntry]:
    entries = []
    for name, artifact in service.artifacts.items():
        rel = f"artifacts/{name}"
        folder = staging / rel
        folder.mkdir(parents=True)
        try:
            artifact.save(folder)
        except Exception as exc:
            raise BundleError(f"saving artifact {name!r} ({artifact.type_name}) failed: {exc}") from exc
        metadata = _jsonable(artifact.metadata)
        (folder / "metadata.json").write_text(json.dumps(metadata, indent=2, sort_keys=True))
        entries.append(
            mf.ArtifactEntry(
                name=name,
                type=artifact.type_name,
                path=rel,
                metadata=metadata,
                files=describe_tree(staging, rel),
                pip_dependencies=list(artifact.pip_dependencies),
            )
        )
    return entries


def _write_env(
    service: BentoService, staging: Path, imports: set[str]
) -> tuple[list[str], dict[str, Any] | None]:
    import yaml

    spec = service.env
    artifact_packages = [p for a in service.artifacts.values() for p in a.pip_dependencies]
    pins = envmod.requirements(spec, imports, artifact_packages)
    folder = staging / "env"
    folder.mkdir()
    write_kappa_wheel(folder)
    # pip reads a relative --find-links against the file's own folder: env/ and the wheel in it
    (folder / "requirements.txt").write_text("\n".join(["--find-links .", *pins]) + "\n")
    python_env = {
        "python": envmod.python_version(),
        "build_dependencies": ["pip"],
        "dependencies": ["-r requirements.txt"],
    }
    (folder / "python_env.yaml").write_text(yaml.safe_dump(python_env, sort_keys=False))
    conda = envmod.conda_env(spec, service.name)
    if conda is not None:
        (folder / "conda.yaml").write_text(yaml.safe_dump(conda, sort_keys=False))
    if spec.setup_sh:
        script = Path(spec.setup_sh)
        text = script.read_text() if len(spec.setup_sh) < 4096 and script.is_file() else spec.setup_sh
        (staging / "setup.sh").write_text(text)
    return pins, conda


def check_packed(service: BentoService) -> None:
    """Raise unless every declared artifact has been packed."""
    missing = [name for name, artifact in service.artifacts.items() if not artifact.packed]
    if missing:
        raise BundleError(
            f"cannot save {service.name}: artifact(s) {missing} are not packed; "
            f"call svc.pack({missing[0]!r}, model) first"
        )


def describe_service(service: BentoService) -> mf.Manifest:
    """The manifest of a loaded or saved service, or one describing an unsaved, in-memory service
    (version ``dev``, no files) for serving it without a bundle."""
    if service.manifest is not None:
        return service.manifest
    return mf.Manifest(
        kappa_version=__version__,
        name=service.name,
        version="dev",
        created_at=datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        digest="",
        service_module=type(service).__module__,
        service_class=type(service).__qualname__,
        doc=(type(service).__doc__ or "").strip(),
        apis=_api_entries(service),
        artifacts=[],
        files=[],
        python_version=envmod.python_version(),
        pip_packages=[],
    )


def save_to_dir(
    service: BentoService,
    path: str | os.PathLike[str],
    version: str | None = None,
    labels: Mapping[str, str] | None = None,
) -> str:
    """Write ``service`` as a bundle at ``path``; the folder must not exist yet."""
    name = validate_name(service.name)
    version = validate_version(version) if version is not None else new_version()
    check_packed(service)
    source = find_service_source(type(service).__module__, type(service).__qualname__)
    target = Path(path).expanduser().absolute()
    if target.exists():
        raise BundleError(f"{str(target)!r} already exists; bundles are never overwritten, pick a new folder")
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = target.parent / f".{target.name}.staging-{secrets.token_hex(4)}"
    staging.mkdir()
    try:
        for rel, file in sorted(source.files.items()):
            dest = staging / "src" / rel
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(file, dest)
        artifacts = _write_artifacts(service, staging)
        pins, conda = _write_env(service, staging, source.external_imports)
        web = None
        if service._web_static_content:
            web_source = Path(service._web_static_content)
            if not web_source.is_dir():
                raise BundleError(f"web_static_content {str(web_source)!r} is not a folder")
            shutil.copytree(web_source, staging / "web")
            web = "web"
        py = envmod.python_version()
        major_minor = ".".join(py.split(".")[:2])
        image = ImageSpec.of_parts(
            name, version, py, service.env.docker_base_image, (staging / "setup.sh").exists(), conda
        )
        (staging / "setup.py").write_text(render_setup_py(name, version, major_minor, kappa_wheel()))
        (staging / "__init__.py").write_text(render_init_py(name, version))
        (staging / "Dockerfile").write_text(render_dockerfile(image))
        artifact_paths = {a.path for a in artifacts}
        files = [
            e for e in describe_tree(staging) if not any(e.path.startswith(p + "/") for p in artifact_paths)
        ]
        manifest = mf.Manifest(
            kappa_version=__version__,
            name=name,
            version=version,
            created_at=datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            digest=bundle_digest([*files, *(f for a in artifacts for f in a.files)]),
            service_module=source.module,
            service_class=type(service).__qualname__,
            doc=(type(service).__doc__ or "").strip(),
            apis=_api_entries(service),
            artifacts=artifacts,
            files=files,
            python_version=py,
            pip_packages=pins,
            conda=conda,
            docker_base_image=image.base_image,
            labels=dict(labels or {}),
            web_static_content=web,
        )
        mf.dump(manifest, staging / mf.FILENAME)  # written last: its presence means complete
        not_writable_by_others(staging)
        os.rename(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    service._version = version
    service._bundle_path = str(target)
    service._labels = dict(labels or {})
    service._manifest = manifest
    log.debug("wrote %s:%s to %s", name, version, target)
    return str(target)
