"""``PytorchModelArtifact``: ``torch.nn.Module`` (cloudpickled) or TorchScript modules."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from kappa.frameworks._imports import require
from kappa.frameworks.base import BaseArtifact

MODULE_FILE = "model.pt"
SCRIPT_FILE = "model.torchscript"
INFO = "pytorch.json"


class PytorchModelArtifact(BaseArtifact):
    """A PyTorch module; loaded on the CPU in eval mode.

    TorchScript modules are stored with ``torch.jit.save``; other modules with
    ``torch.save`` and cloudpickle, so classes defined in the service module
    travel with the bundle.
    """

    pip_dependencies = ("torch", "cloudpickle")

    def _validate(self, obj: Any) -> None:
        torch = require("torch", "torch", "PytorchModelArtifact")
        if not isinstance(obj, torch.nn.Module):
            raise TypeError(f"expected a torch.nn.Module, got {type(obj).__name__}")

    def _save(self, obj: Any, path: Path) -> None:
        torch = require("torch", "torch", "PytorchModelArtifact")
        if isinstance(obj, torch.jit.ScriptModule):
            torch.jit.save(obj, str(path / SCRIPT_FILE))
            kind = "torchscript"
        else:
            import cloudpickle

            torch.save(obj, path / MODULE_FILE, pickle_module=cloudpickle)
            kind = "module"
        (path / INFO).write_text(json.dumps({"kind": kind}))

    def _load(self, path: Path) -> Any:
        torch = require("torch", "torch", "PytorchModelArtifact")
        kind = json.loads((path / INFO).read_text())["kind"]
        if kind == "torchscript":
            model = torch.jit.load(str(path / SCRIPT_FILE), map_location="cpu")
        else:
            # The file's sha256 was verified against the manifest before this runs.
            model = torch.load(path / MODULE_FILE, map_location="cpu", weights_only=False)
        model.eval()
        return model
