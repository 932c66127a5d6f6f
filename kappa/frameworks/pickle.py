"""``PickleArtifact``: any Python object, stored with cloudpickle."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kappa.frameworks.base import BaseArtifact

FILE = "model.pkl"


class PickleArtifact(BaseArtifact):
    """Stores any object cloudpickle can serialize (functions, pipelines, ...)."""

    pip_dependencies = ("cloudpickle",)

    def _save(self, obj: Any, path: Path) -> None:
        import cloudpickle

        with open(path / FILE, "wb") as handle:
            cloudpickle.dump(obj, handle)

    def _load(self, path: Path) -> Any:
        import pickle

        with open(path / FILE, "rb") as handle:
            return pickle.load(handle)
