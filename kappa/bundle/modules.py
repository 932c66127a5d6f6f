"""Find the service's module and the local modules it imports, to copy them under ``src/``."""

from __future__ import annotations

import ast
import importlib.util
import logging
import sys
from dataclasses import dataclass, field
from pathlib import Path

from kappa.errors import BundleError

log = logging.getLogger(__name__)

# Kappa's own packages are never copied into a bundle, even from a source checkout.
_NEVER_LOCAL = frozenset({"kappa", "kappa_batch", "kappa_online"})


@dataclass
class ServiceSource:
    """The service module, the folder its import path starts from, and what it imports."""

    module: str
    root: Path
    files: dict[str, Path] = field(default_factory=dict)  # path relative to root -> file
    external_imports: set[str] = field(default_factory=set)  # top-level names not local

    @property
    def local_top_levels(self) -> set[str]:
        return {Path(rel).parts[0].removesuffix(".py") for rel in self.files}


def _installed_dirs() -> list[Path]:
    dirs = {Path(p).resolve() for p in (sys.prefix, sys.base_prefix, sys.exec_prefix)}
    return sorted(dirs)


def _is_local(file: Path, root: Path, installed: list[Path]) -> bool:
    try:
        file.relative_to(root)
    except ValueError:
        return False
    if any(part in ("site-packages", "dist-packages") for part in file.parts):
        return False
    return not any(file.is_relative_to(d) for d in installed if not root.is_relative_to(d))


def _module_file(name: str) -> Path | None:
    module = sys.modules.get(name)
    file = getattr(module, "__file__", None) if module is not None else None
    if file is None:
        try:
            spec = importlib.util.find_spec(name)
        except (ImportError, ValueError, AttributeError):
            return None
        file = spec.origin if spec is not None and spec.has_location else None
    return Path(file).resolve() if file else None


def _imports(file: Path, module: str) -> set[str]:
    """Module names a file imports (relative imports resolved)."""
    is_package = file.name == "__init__.py"
    package = module if is_package else module.rpartition(".")[0]
    try:
        tree = ast.parse(file.read_text(encoding="utf-8"), filename=str(file))
    except (SyntaxError, UnicodeDecodeError) as exc:
        raise BundleError(f"cannot read the service module source {file}: {exc}") from None
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                target = f"{base}.{node.module}" if node.module else base
            else:
                target = node.module or ""
            if target:
                names.add(target)
                names.update(f"{target}.{alias.name}" for alias in node.names)
    return names


def find_service_source(module_name: str, class_name: str) -> ServiceSource:
    if module_name == "__main__":
        raise BundleError(
            f"{class_name} is defined in __main__ (a script or a notebook), which a bundle cannot "
            f"import again; move the class into a module file (e.g. {class_name.lower()}.py) and "
            f"`from {class_name.lower()} import {class_name}` where you pack and save it"
        )
    file = _module_file(module_name)
    if file is None or file.suffix != ".py":
        raise BundleError(f"cannot find the source file of module {module_name!r} that defines {class_name}")
    depth = module_name.count(".") + (1 if file.name == "__init__.py" else 0)
    root = file.parents[depth]
    installed = _installed_dirs()
    source = ServiceSource(module=module_name, root=root)
    queue = [(module_name, file)]
    seen: set[str] = set()
    while queue:
        name, path = queue.pop()
        if name in seen:
            continue
        seen.add(name)
        source.files[path.relative_to(root).as_posix()] = path
        parts = name.split(".")
        for i in range(1, len(parts)):  # parent packages' __init__.py
            parent = root.joinpath(*parts[:i], "__init__.py")
            if parent.exists():
                source.files[parent.relative_to(root).as_posix()] = parent
        for imported in sorted(_imports(path, name)):
            top = imported.split(".")[0]
            if top in _NEVER_LOCAL or top in sys.stdlib_module_names:
                continue
            imported_file = _module_file(imported)
            if (
                imported_file is not None
                and imported_file.suffix == ".py"
                and _is_local(imported_file, root, installed)
            ):
                queue.append((imported, imported_file))
            elif imported_file is not None or "." not in imported:
                source.external_imports.add(top)
    source.external_imports -= source.local_top_levels
    return source
