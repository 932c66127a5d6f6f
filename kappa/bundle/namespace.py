"""Import a bundle's ``src/`` modules so that two bundles never share a module.

While a bundle is being imported (and its artifacts unpickled) its modules sit
in ``sys.modules`` under their real names, so pickles that refer to them
resolve (served by :class:`~kappa.bundle.importer.BundleFinder`, never from
``sys.path``); afterwards they move to ``kappa_bundles.<digest>.<name>`` and
whatever the process had under those names before comes back. Two versions of
the same service can so live side by side in one process.
"""

from __future__ import annotations

import importlib
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import ModuleType

from kappa.bundle.importer import BundleFinder

_lock = threading.RLock()
_cache: dict[str, dict[str, ModuleType]] = {}
PREFIX = "kappa_bundles"


def _belongs(name: str, tops: set[str]) -> bool:
    return name.split(".")[0] in tops


@contextmanager
def bundle_namespace(finder: BundleFinder, digest: str) -> Iterator[None]:
    """Make the bundle's modules importable under their own names for the duration."""
    key = digest.replace("sha256:", "")[:16]
    tops = finder.top_levels
    with _lock:
        saved = {n: sys.modules.pop(n) for n in list(sys.modules) if _belongs(n, tops)}
        cached = _cache.get(key)
        if cached is not None:
            sys.modules.update(cached)
        importlib.invalidate_caches()
        finder.install()
        try:
            yield
        finally:
            finder.uninstall()
            mine = {n: sys.modules.pop(n) for n in list(sys.modules) if _belongs(n, tops)}
            if cached is None:
                _cache[key] = mine
                for name, module in mine.items():
                    sys.modules[f"{PREFIX}.{key}.{name}"] = module
            sys.modules.update(saved)
