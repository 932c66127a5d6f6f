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

    none_is_one_thread = True

    def _read_thread_settings(self, obj: Any) -> dict[str, Any]:
        """``n_jobs`` of the estimator and of a pipeline's steps (joblib's threads would fight the
        other workers')."""
        get_params = getattr(obj, "get_params", None)
        if get_params is None:
            return {}
        try:
            params = get_params(deep=True)
        except Exception:  # noqa: BLE001 - an estimator-like object without sklearn's params
            return {}
        return {key: value for key, value in params.items() if key.split("__")[-1] == "n_jobs"}

    def _write_thread_settings(self, obj: Any, settings: dict[str, Any]) -> None:
        obj.set_params(**settings)
