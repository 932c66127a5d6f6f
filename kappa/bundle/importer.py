"""Import a bundle's code only from the source bytes that were just verified.

The bundle's ``src/`` folder is never put on ``sys.path``. A finder placed first
on ``sys.meta_path`` serves the modules the manifest lists, compiled from the
bytes whose sha256 was checked in this process; it never reads bytecode
(``__pycache__``) and refuses any other module under the bundle's top-level
names, so a file added to the folder after saving can never be imported.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from types import ModuleType

SRC = "src/"


@dataclass(frozen=True)
class ModuleSource:
    path: Path  # where the file is, for __file__ and tracebacks
    code: bytes  # the verified source
    is_package: bool


def module_name(rel: str) -> tuple[str, bool] | None:
    """``src/a/b.py`` -> (``a.b``, False); ``src/a/__init__.py`` -> (``a``, True); else None."""
    if not rel.startswith(SRC) or not rel.endswith(".py"):
        return None
    parts = PurePosixPath(rel[len(SRC) :]).with_suffix("").parts
    if not parts or not all(p.isidentifier() for p in parts):
        return None
    if parts[-1] == "__init__":
        return ".".join(parts[:-1]), True
    return ".".join(parts), False


class BundleFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Serves exactly the listed modules of one bundle while it loads."""

    def __init__(self, root: Path, sources: Mapping[str, bytes]) -> None:
        self.modules: dict[str, ModuleSource] = {}
        for rel, code in sources.items():
            named = module_name(rel)
            if named is None or not named[0]:
                continue
            name, is_package = named
            self.modules[name] = ModuleSource(root / rel, code, is_package)
        # folders without __init__.py become empty packages (namespace-style)
        for name in list(self.modules):
            parts = name.split(".")
            for i in range(1, len(parts)):
                parent = ".".join(parts[:i])
                if parent not in self.modules:
                    folder = root / SRC / Path(*parts[:i])
                    self.modules[parent] = ModuleSource(folder / "__init__.py", b"", True)
        self.top_levels = {name.split(".")[0] for name in self.modules}

    def find_spec(
        self, fullname: str, path: Sequence[str] | None = None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        source = self.modules.get(fullname)
        if source is None:
            if fullname.split(".")[0] in self.top_levels:
                raise ModuleNotFoundError(
                    f"No module named {fullname!r} in this bundle (only the files its manifest lists "
                    "are importable)",
                    name=fullname,
                )
            return None
        spec = importlib.machinery.ModuleSpec(
            fullname, self, origin=str(source.path), is_package=source.is_package
        )
        spec.has_location = True
        if source.is_package:
            # No folder to search: after loading, when this finder is gone, Python's own path
            # finder must not find unlisted files (or bytecode) below a bundle package.
            spec.submodule_search_locations = []
        return spec

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType | None:
        return None

    def exec_module(self, module: ModuleType) -> None:
        source = self.modules[module.__name__]
        module.__cached__ = None  # type: ignore[attr-defined]  # there is no bytecode, by design
        code = compile(source.code, str(source.path), "exec", dont_inherit=True)
        exec(code, module.__dict__)  # noqa: S102 - the bundle's own verified code

    def get_source(self, fullname: str) -> str | None:
        source = self.modules.get(fullname)
        return source.code.decode("utf-8", errors="replace") if source is not None else None

    def install(self) -> None:
        sys.meta_path.insert(0, self)

    def uninstall(self) -> None:
        if self in sys.meta_path:
            sys.meta_path.remove(self)
