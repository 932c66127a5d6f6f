"""Artifact class names -> dotted paths and install hints, imported on first use."""

from __future__ import annotations

import importlib
from types import MappingProxyType
from typing import Any

from kappa.errors import ArtifactError

_registry: dict[str, str] = {
    "SklearnModelArtifact": "kappa.frameworks.sklearn:SklearnModelArtifact",
    "PickleArtifact": "kappa.frameworks.pickle:PickleArtifact",
    "XgboostModelArtifact": "kappa.frameworks.xgboost:XgboostModelArtifact",
    "LightGBMModelArtifact": "kappa.frameworks.lightgbm:LightGBMModelArtifact",
    "PytorchModelArtifact": "kappa.frameworks.pytorch:PytorchModelArtifact",
    "OnnxModelArtifact": "kappa.frameworks.onnx:OnnxModelArtifact",
}
registry = MappingProxyType(_registry)


def artifact_class(name: str) -> Any:
    """The built-in artifact class called ``name``."""
    try:
        module_name, attr = _registry[name].split(":")
    except KeyError:
        raise ArtifactError(f"unknown artifact type {name!r}; built-in: {sorted(_registry)}") from None
    return getattr(importlib.import_module(module_name), attr)
