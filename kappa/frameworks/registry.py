"""Artifact class names -> dotted paths, imported on first use."""

from __future__ import annotations

from typing import Any

from kappa._registry import LazyRegistry
from kappa.errors import ArtifactError

registry = LazyRegistry(
    "artifact type",
    {
        "SklearnModelArtifact": "kappa.frameworks.sklearn:SklearnModelArtifact",
        "PickleArtifact": "kappa.frameworks.pickle:PickleArtifact",
        "XgboostModelArtifact": "kappa.frameworks.xgboost:XgboostModelArtifact",
        "LightGBMModelArtifact": "kappa.frameworks.lightgbm:LightGBMModelArtifact",
        "PytorchModelArtifact": "kappa.frameworks.pytorch:PytorchModelArtifact",
        "OnnxModelArtifact": "kappa.frameworks.onnx:OnnxModelArtifact",
    },
    ArtifactError,
)


def artifact_class(name: str) -> Any:
    """The built-in artifact class called ``name``."""
    return registry.resolve(name)
