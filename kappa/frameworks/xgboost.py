"""``XgboostModelArtifact``: XGBoost boosters and scikit-learn wrappers (native JSON format)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from kappa.frameworks._imports import require
from kappa.frameworks.base import BaseArtifact

FILE = "model.json"
INFO = "xgboost.json"


class XgboostModelArtifact(BaseArtifact):
    """An ``xgboost.Booster`` or ``XGBClassifier``/``XGBRegressor``/..., in XGBoost's own format."""

    pip_dependencies = ("xgboost",)

    def _validate(self, obj: Any) -> None:
        xgb = require("xgboost", "xgboost", "XgboostModelArtifact")
        if not isinstance(obj, (xgb.Booster, xgb.XGBModel)):
            raise TypeError(f"expected an xgboost Booster or XGBModel, got {type(obj).__name__}")

    def _save(self, obj: Any, path: Path) -> None:
        obj.save_model(str(path / FILE))
        cls = type(obj)
        (path / INFO).write_text(json.dumps({"class": f"{cls.__module__}:{cls.__qualname__}"}))

    def _load(self, path: Path) -> Any:
        import importlib

        xgb = require("xgboost", "xgboost", "XgboostModelArtifact")
        module_name, qualname = json.loads((path / INFO).read_text())["class"].split(":")
        cls = getattr(importlib.import_module(module_name), qualname)
        if cls is xgb.Booster:
            booster = xgb.Booster()
            booster.load_model(str(path / FILE))
            return booster
        model = cls()
        model.load_model(str(path / FILE))
        return model

    def _read_thread_settings(self, obj: Any) -> dict[str, Any]:
        xgb = require("xgboost", "xgboost", "XgboostModelArtifact")
        if isinstance(obj, xgb.Booster):
            return {"nthread": int(json.loads(obj.save_config())["learner"]["generic_param"]["nthread"])}
        return {"n_jobs": obj.get_params().get("n_jobs")}  # the scikit-learn wrapper passes it on

    def _write_thread_settings(self, obj: Any, settings: dict[str, Any]) -> None:
        xgb = require("xgboost", "xgboost", "XgboostModelArtifact")
        if isinstance(obj, xgb.Booster):
            obj.set_param("nthread", settings["nthread"])
        else:
            obj.set_params(**settings)
