"""``SklearnModelArtifact``: scikit-learn estimators and pipelines (joblib)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kappa.frameworks._imports import require
from kappa.frameworks.base import BaseArtifact

FILE = "model.joblib"


class SklearnModelArtifact(BaseArtifact):
    """A scikit-learn estimator, stored with joblib."""

    pip_dependencies = ("scikit-learn",)

    def _validate(self, obj: Any) -> None:
        if not (hasattr(obj, "fit") or hasattr(obj, "predict") or hasattr(obj, "transform")):
            raise TypeError(f"expected a scikit-learn estimator, got {type(obj).__name__}")

    def _save(self, obj: Any, path: Path) -> None:
        joblib = require("joblib", "scikit-learn", "SklearnModelArtifact")
        joblib.dump(obj, path / FILE)

    def _load(self, path: Path) -> Any:
        joblib = require("joblib", "scikit-learn", "SklearnModelArtifact")
        return joblib.load(path / FILE)
