"""Adapter names (as written in ``kappa.yml``) -> classes, imported on first use."""

from __future__ import annotations

import importlib
from types import MappingProxyType
from typing import Any

from kappa.errors import InputError

_registry: dict[str, str] = {
    "DataframeInput": "kappa.adapters.dataframe:DataframeInput",
    "JsonInput": "kappa.adapters.json_input:JsonInput",
    "FileInput": "kappa.adapters.files:FileInput",
    "ImageInput": "kappa.adapters.files:ImageInput",
    "NumpyInput": "kappa.adapters.numpy_input:NumpyInput",
    "DefaultOutput": "kappa.adapters.outputs:DefaultOutput",
    "JsonOutput": "kappa.adapters.outputs:JsonOutput",
    "DataframeOutput": "kappa.adapters.outputs:DataframeOutput",
}
registry = MappingProxyType(_registry)


def adapter_class(name: str) -> Any:
    """The adapter class registered under ``name``."""
    try:
        module_name, attr = _registry[name].split(":")
    except KeyError:
        raise InputError(f"unknown adapter {name!r}; known: {sorted(_registry)}") from None
    return getattr(importlib.import_module(module_name), attr)


def build_adapter(name: str, config: dict[str, Any]) -> Any:
    """Rebuild an adapter from its manifest entry."""
    return adapter_class(name)(**config)
