"""Import a bundle's ``src/`` modules so that two bundles never share a module.

While a bundle is being imported (and its artifacts unpickled) its modules sit
in ``sys.modules`` under their real names, so pickles that refer to them
resolve; afterwards they move to ``kappa_bundles.<digest>.<name>`` and
whatever the process had under those names before comes back. Two versions of
the same service can so live side by side in one process.
"""

from __future__ import annotations

import importlib
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType

_lock = threading.RLock()
_cache: dict[str, dict[str, ModuleType]] = {}
PREFIX = "kappa_bundles"


def _top_levels(src: Path) -> set[str]:
    if not src.is_dir():
        return set()
    names = set()
    for entry in src.iterdir():
        if entry.is_dir() and (entry / "__init__.py").exists():
            names.add(entry.name)
        elif entry.suffix == ".py":
            names.add(entry.stem)
    return names


def _belongs(name: str, tops: set[str]) -> bool:
    return name.split(".")[0] in tops


@contextmanager
def bundle_namespace(src: Path, digest: str) -> Iterator[None]:
    """Make the bundle's modules importable under their own names for the duration."""
    key = digest.replace("sha256:", "")[:16]
    tops = _top_levels(src)
    with _lock:
        saved = {n: sys.modules.pop(n) for n in list(sys.modules) if _belongs(n, tops)}
        cached = _cache.get(key)
        added_path = False
        if cached is not None:
            sys.modules.update(cached)
        else:
            sys.path.insert(0, str(src))
            added_path = True
            importlib.invalidate_caches()
        writes_bytecode = sys.dont_write_bytecode
        sys.dont_write_bytecode = True  # never write __pycache__ into a bundle
        try:
            yield
        finally:
            sys.dont_write_bytecode = writes_bytecode
            if added_path:
                sys.path.remove(str(src))
            mine = {n: sys.modules.pop(n) for n in list(sys.modules) if _belongs(n, tops)}
            if cached is None:
                _cache[key] = mine
                for name, module in mine.items():
                    sys.modules[f"{PREFIX}.{key}.{name}"] = module
            sys.modules.update(saved)
