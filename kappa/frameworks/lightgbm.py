"""``LightGBMModelArtifact``: LightGBM boosters (text format) and scikit-learn wrappers."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from kappa.frameworks._imports import require
from kappa.frameworks.base import BaseArtifact

BOOSTER_FILE = "model.txt"
WRAPPER_FILE = "model.joblib"
INFO = "lightgbm.json"
THREAD_PARAMS = ("n_jobs", "num_threads", "num_thread", "nthread", "nthreads")


class LightGBMModelArtifact(BaseArtifact):
    """A ``lightgbm.Booster`` (saved as LightGBM text) or ``LGBMModel`` wrapper (joblib)."""

    pip_dependencies = ("lightgbm",)

    def _validate(self, obj: Any) -> None:
        lgb = require("lightgbm", "lightgbm", "LightGBMModelArtifact")
        if not isinstance(obj, (lgb.Booster, lgb.LGBMModel)):
            raise TypeError(f"expected a lightgbm Booster or LGBMModel, got {type(obj).__name__}")

    def _save(self, obj: Any, path: Path) -> None:
        lgb = require("lightgbm", "lightgbm", "LightGBMModelArtifact")
        if isinstance(obj, lgb.Booster):
            obj.save_model(str(path / BOOSTER_FILE))
            kind = "booster"
        else:
            import joblib

            joblib.dump(obj, path / WRAPPER_FILE)
            kind = "sklearn"
        (path / INFO).write_text(json.dumps({"kind": kind}))

    def _load(self, path: Path) -> Any:
        lgb = require("lightgbm", "lightgbm", "LightGBMModelArtifact")
        kind = json.loads((path / INFO).read_text())["kind"]
        if kind == "booster":
            return lgb.Booster(model_file=str(path / BOOSTER_FILE))
        import joblib

        return joblib.load(path / WRAPPER_FILE)

    def _read_thread_settings(self, obj: Any) -> dict[str, Any]:
        """The scikit-learn wrapper's ``n_jobs`` and any alias it was given (``num_threads``,
        ``nthread``, ...: they win over ``n_jobs``); a Booster predicts on OpenMP's limit."""
        lgb = require("lightgbm", "lightgbm", "LightGBMModelArtifact")
        if not isinstance(obj, lgb.LGBMModel):
            return {}
        params = obj.get_params()
        return {k: params[k] for k in THREAD_PARAMS if k in params}

    def _write_thread_settings(self, obj: Any, settings: dict[str, Any]) -> None:
        obj.set_params(**settings)
