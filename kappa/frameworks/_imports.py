"""Import an optional framework, or say how to install it."""

from __future__ import annotations

import importlib
from types import ModuleType

from kappa.errors import missing_dependency


def require(module: str, package: str, feature: str, extra: str = "frameworks") -> ModuleType:
    try:
        return importlib.import_module(module)
    except ImportError:
        raise missing_dependency(package, extra, feature) from None
