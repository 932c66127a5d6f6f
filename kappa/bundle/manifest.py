"""``kappa.yml``: the typed manifest of a bundle, written last when saving."""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kappa.bundle.integrity import FileEntry, safe_relative
from kappa.bundle.version import validate_name, validate_version
from kappa.errors import BundleError

if TYPE_CHECKING:
    import pyarrow as pa

FILENAME = "kappa.yml"
FORMAT_VERSION = 1


def schema_to_dict(schema: pa.Schema | None) -> dict[str, Any] | None:
    """A readable field list plus the exact Arrow IPC form of a schema."""
    if schema is None:
        return None
    return {
        "fields": [{"name": f.name, "type": str(f.type)} for f in schema],
        "ipc": base64.b64encode(schema.serialize().to_pybytes()).decode("ascii"),
    }


def schema_from_dict(data: dict[str, Any] | None) -> pa.Schema | None:
    if not data:
        return None
    import pyarrow as pa

    return pa.ipc.read_schema(pa.py_buffer(base64.b64decode(data["ipc"])))


def _entry(data: dict[str, Any]) -> FileEntry:
    entry = FileEntry(**data)
    safe_relative(entry.path)
    return entry


@dataclass(frozen=True)
class ApiEntry:
    name: str
    input_type: str
    input_config: dict[str, Any]
    output_type: str
    output_config: dict[str, Any]
    batch: bool
    mb_max_batch_size: int
    mb_max_latency: int
    doc: str = ""
    input_schema: dict[str, Any] | None = None
    output_schema: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "input": {"type": self.input_type, "config": self.input_config},
            "output": {"type": self.output_type, "config": self.output_config},
            "batch": self.batch,
            "mb_max_batch_size": self.mb_max_batch_size,
            "mb_max_latency": self.mb_max_latency,
            "doc": self.doc,
            "input_schema": self.input_schema,
            "output_schema": self.output_schema,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ApiEntry:
        return cls(
            name=data["name"],
            input_type=data["input"]["type"],
            input_config=data["input"].get("config") or {},
            output_type=data["output"]["type"],
            output_config=data["output"].get("config") or {},
            batch=bool(data["batch"]),
            mb_max_batch_size=int(data["mb_max_batch_size"]),
            mb_max_latency=int(data["mb_max_latency"]),
            doc=data.get("doc") or "",
            input_schema=data.get("input_schema"),
            output_schema=data.get("output_schema"),
        )


@dataclass(frozen=True)
class ArtifactEntry:
    name: str
    type: str
    path: str
    metadata: dict[str, Any]
    files: list[FileEntry]
    pip_dependencies: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "type": self.type,
            "path": self.path,
            "metadata": self.metadata,
            "pip_dependencies": self.pip_dependencies,
            "files": [f.to_dict() for f in self.files],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ArtifactEntry:
        return cls(
            name=data["name"],
            type=data["type"],
            path=safe_relative(data["path"]),
            metadata=data.get("metadata") or {},
            files=[_entry(f) for f in data.get("files") or []],
            pip_dependencies=list(data.get("pip_dependencies") or []),
        )


@dataclass(frozen=True)
class Manifest:
    name: str
    version: str
    created_at: str
    digest: str
    service_module: str
    service_class: str
    apis: list[ApiEntry]
    artifacts: list[ArtifactEntry]
    files: list[FileEntry]
    python_version: str
    pip_packages: list[str]
    labels: dict[str, str] = field(default_factory=dict)
    doc: str = ""
    conda: dict[str, Any] | None = None
    docker_base_image: str | None = None
    web_static_content: str | None = None
    kappa_version: str = ""
    format_version: int = FORMAT_VERSION

    @property
    def all_files(self) -> list[FileEntry]:
        return [*self.files, *(f for a in self.artifacts for f in a.files)]

    @property
    def tag(self) -> str:
        return f"{self.name}:{self.version}"

    def api(self, name: str) -> ApiEntry:
        for entry in self.apis:
            if entry.name == name:
                return entry
        raise BundleError(f"{self.name} has no API {name!r}; its APIs are {[a.name for a in self.apis]}")

    def to_dict(self) -> dict[str, Any]:
        return {
            "format_version": self.format_version,
            "kappa_version": self.kappa_version,
            "name": self.name,
            "version": self.version,
            "created_at": self.created_at,
            "digest": self.digest,
            "service": {"module": self.service_module, "class": self.service_class, "doc": self.doc},
            "apis": [a.to_dict() for a in self.apis],
            "artifacts": [a.to_dict() for a in self.artifacts],
            "env": {
                "python_version": self.python_version,
                "pip_packages": self.pip_packages,
                "conda": self.conda,
                "docker_base_image": self.docker_base_image,
            },
            "labels": self.labels,
            "web_static_content": self.web_static_content,
            "files": [f.to_dict() for f in self.files],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str = "") -> Manifest:
        if not isinstance(data, dict) or "format_version" not in data:
            raise BundleError(f"{where or FILENAME} is not a Kappa manifest (no format_version)")
        fmt = data["format_version"]
        if not isinstance(fmt, int) or fmt > FORMAT_VERSION:
            raise BundleError(
                f"{where or FILENAME} has bundle format {fmt}, newer than this Kappa "
                f"{data.get('kappa_version', '')} reads (format {FORMAT_VERSION}); "
                "upgrade Kappa (`pip install -U kappa-engine`) to load it"
            )
        try:
            env = data["env"]
            return cls(
                format_version=fmt,
                kappa_version=data.get("kappa_version", ""),
                name=validate_name(data["name"]),
                version=validate_version(data["version"]),
                created_at=_text(data, "created_at"),
                digest=_text(data, "digest"),
                service_module=_text(data["service"], "module"),
                service_class=_text(data["service"], "class"),
                doc=data["service"].get("doc") or "",
                apis=[ApiEntry.from_dict(a) for a in data["apis"]],
                artifacts=[ArtifactEntry.from_dict(a) for a in data["artifacts"]],
                files=[_entry(f) for f in data.get("files") or []],
                python_version=_text(env, "python_version"),
                pip_packages=list(env.get("pip_packages") or []),
                conda=env.get("conda"),
                docker_base_image=env.get("docker_base_image"),
                labels=dict(data.get("labels") or {}),
                web_static_content=data.get("web_static_content"),
            )
        except (KeyError, TypeError) as exc:
            raise BundleError(f"{where or FILENAME} is malformed: missing or bad field {exc}") from None


def _text(data: dict[str, Any], key: str) -> str:
    value = data[key]
    if not isinstance(value, str):
        raise TypeError(f"{key!r} must be a string, not {type(value).__name__}")
    return value


def canonical(data: dict[str, Any]) -> str:
    """One text for a manifest's content, whichever of YAML or JSON it came back from."""
    import json

    return json.dumps(data, sort_keys=True, default=str)


def dump(manifest: Manifest, path: Path) -> None:
    import yaml

    text = yaml.safe_dump(manifest.to_dict(), sort_keys=False, allow_unicode=True)
    path.write_text(text, encoding="utf-8")


def load_manifest(bundle_dir: Path) -> Manifest:
    import yaml

    path = bundle_dir / FILENAME
    if not bundle_dir.exists():
        raise BundleError(f"no bundle at {str(bundle_dir)!r}: the folder does not exist")
    if not path.is_file():
        raise BundleError(
            f"{str(bundle_dir)!r} is not a complete bundle: it has no {FILENAME} "
            "(a save that did not finish, or not a bundle folder)"
        )
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise BundleError(f"{path} is not valid YAML: {exc}") from None
    return Manifest.from_dict(data, where=str(path))
