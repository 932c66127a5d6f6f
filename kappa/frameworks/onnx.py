"""``OnnxModelArtifact``: ONNX models, served with onnxruntime."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from kappa.frameworks._imports import require
from kappa.frameworks.base import BaseArtifact

FILE = "model.onnx"


class OnnxModelArtifact(BaseArtifact):
    """Packs an ``onnx.ModelProto``, serialized bytes, or a path to a ``.onnx`` file.

    ``self.artifacts.model`` is an ``onnxruntime.InferenceSession`` once loaded
    from a bundle (and right after packing).
    """

    pip_dependencies = ("onnxruntime", "onnx")

    def __init__(self, name: str, providers: list[str] | None = None) -> None:
        super().__init__(name)
        self.providers = providers or ["CPUExecutionProvider"]

    def _model_bytes(self, obj: Any) -> bytes:
        if isinstance(obj, (bytes, bytearray)):
            return bytes(obj)
        if isinstance(obj, (str, os.PathLike)):
            return Path(obj).read_bytes()
        serialize = getattr(obj, "SerializeToString", None)
        if serialize is None:
            raise TypeError(f"expected an onnx.ModelProto, bytes or a .onnx path, got {type(obj).__name__}")
        return bytes(serialize())

    def _session(self, data: bytes) -> Any:
        ort = require("onnxruntime", "onnxruntime", "OnnxModelArtifact")
        return ort.InferenceSession(data, providers=self.providers)

    def pack(self, obj: Any, metadata: Any = None) -> BaseArtifact:
        try:
            data = self._model_bytes(obj)
        except (TypeError, OSError) as exc:
            from kappa.errors import ArtifactError

            raise ArtifactError(f"OnnxModelArtifact {self.name!r} cannot pack this object: {exc}") from None
        super().pack(self._session(data), metadata)
        self._bytes = data
        return self

    def _save(self, obj: Any, path: Path) -> None:
        (path / FILE).write_bytes(self._bytes)

    def _load(self, path: Path) -> Any:
        self._bytes = (path / FILE).read_bytes()
        return self._session(self._bytes)
