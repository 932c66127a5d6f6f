"""Adapter names (as written in ``kappa.yml``) -> classes, imported on first use."""

from __future__ import annotations

from typing import Any

from kappa._registry import LazyRegistry
from kappa.errors import InputError

registry = LazyRegistry(
    "adapter",
    {
        "DataframeInput": "kappa.adapters.dataframe:DataframeInput",
        "JsonInput": "kappa.adapters.json_input:JsonInput",
        "FileInput": "kappa.adapters.files:FileInput",
        "ImageInput": "kappa.adapters.files:ImageInput",
        "NumpyInput": "kappa.adapters.numpy_input:NumpyInput",
        "DefaultOutput": "kappa.adapters.outputs:DefaultOutput",
        "JsonOutput": "kappa.adapters.outputs:JsonOutput",
        "DataframeOutput": "kappa.adapters.outputs:DataframeOutput",
    },
    InputError,
)


def adapter_class(name: str) -> Any:
    """The adapter class registered under ``name``."""
    return registry.resolve(name)


def build_adapter(name: str, config: dict[str, Any]) -> Any:
    """Rebuild an adapter from its manifest entry."""
    return adapter_class(name)(**config)
