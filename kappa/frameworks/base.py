"""The artifact protocol, and the base class for custom artifacts.

An artifact is one named model (or any object) a service needs. Writing your
own takes three methods::

    from kappa.frameworks.base import BaseArtifact

    class TextVocabArtifact(BaseArtifact):
        pip_dependencies = ()                   # distributions the files need

        def _validate(self, obj):               # optional: reject wrong objects
            if not isinstance(obj, dict):
                raise TypeError("expects a dict")

        def _save(self, obj, path):             # write files under `path`
            (path / "vocab.json").write_text(json.dumps(obj))

        def _load(self, path):                  # read them back
            return json.loads((path / "vocab.json").read_text())

Declare it like any other: ``@kappa.artifacts([TextVocabArtifact("vocab")])``.
Files are hashed by the bundle writer and verified before ``_load`` runs, so
``_load`` may unpickle safely. Import the framework inside the methods (never
at module top) and raise :func:`kappa.errors.missing_dependency` when it is
missing.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any, ClassVar

from kappa.errors import ArtifactError

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")


def _freeze(value: Any) -> Any:
    """A deep, read-only copy of metadata."""
    if isinstance(value, Mapping):
        return MappingProxyType({str(k): _freeze(v) for k, v in value.items()})
    if isinstance(value, (list, tuple)):
        return tuple(_freeze(v) for v in value)
    if isinstance(value, set):
        return frozenset(_freeze(v) for v in value)
    return copy.deepcopy(value)


def thaw(value: Any) -> Any:
    """Plain dicts and lists again, for writing metadata to YAML/JSON."""
    if isinstance(value, Mapping):
        return {k: thaw(v) for k, v in value.items()}
    if isinstance(value, (tuple, list, frozenset)):
        return [thaw(v) for v in value]
    return value


class BaseArtifact:
    """A named slot for one model; subclass it for a framework."""

    pip_dependencies: ClassVar[tuple[str, ...]] = ()
    """Distributions whose pinned versions go into the bundle's requirements."""

    def __init__(self, name: str) -> None:
        if not isinstance(name, str) or not _NAME.match(name):
            raise ArtifactError(f"artifact name {name!r} is not a Python identifier of at most 64 characters")
        self.name = name
        self._obj: Any = None
        self._packed = False
        self._metadata: Mapping[str, Any] = MappingProxyType({})
        self._thread_settings: dict[str, Any] | None = None  # the loaded model's own, before a limit

    # -- public -----------------------------------------------------------
    @property
    def type_name(self) -> str:
        return type(self).__name__

    @property
    def packed(self) -> bool:
        return self._packed

    @property
    def metadata(self) -> Mapping[str, Any]:
        """Read-only metadata given to ``pack`` (or read back from a bundle)."""
        return self._metadata

    def pack(self, obj: Any, metadata: Mapping[str, Any] | None = None) -> BaseArtifact:
        try:
            self._validate(obj)
        except (TypeError, ValueError) as exc:
            raise ArtifactError(f"{self.type_name} {self.name!r} cannot pack this object: {exc}") from None
        if metadata is not None and not isinstance(metadata, Mapping):
            raise ArtifactError(f"metadata of artifact {self.name!r} must be a mapping")
        self._obj = obj
        self._metadata = _freeze(metadata or {})
        self._packed = True
        return self

    def get(self) -> Any:
        if not self._packed:
            raise ArtifactError(
                f"artifact {self.name!r} is not packed; call svc.pack({self.name!r}, model) first"
            )
        return self._obj

    def save(self, path: Path) -> None:
        """Write the packed object's files under ``path`` (created by the caller)."""
        self._save(self.get(), path)

    def load(self, path: Path, metadata: Mapping[str, Any] | None = None) -> BaseArtifact:
        """Read the object back from files that have already been verified."""
        self._obj = self._load(path)
        self._metadata = _freeze(metadata or {})
        self._packed = True
        self._thread_settings = None
        if type(self)._read_thread_settings is not BaseArtifact._read_thread_settings:
            from kappa import threads

            threads.follow(self)  # a scoring process keeps the model at its share of the cores
        return self

    def limit_threads(self, threads: int | None) -> None:
        """Hold the loaded model to ``threads`` threads (see :mod:`kappa.threads`); ``None`` gives
        it back the settings it was loaded with."""
        if not self._packed:
            return
        if self._thread_settings is None:
            self._thread_settings = self._read_thread_settings(self._obj)
        own = self._thread_settings
        if own:
            wanted = own if threads is None else {k: self._capped(v, threads) for k, v in own.items()}
            self._write_thread_settings(self._obj, wanted)

    def _capped(self, value: Any, threads: int) -> Any:
        """A thread count held to ``threads``: one above it, or meaning "every core" (``None``, 0,
        negative), becomes ``threads``."""
        if value is None:
            return None if self.none_is_one_thread else threads
        if isinstance(value, bool) or not isinstance(value, int):
            return value
        return threads if value <= 0 or value > threads else value

    def fresh(self) -> BaseArtifact:
        """An unpacked copy of this declaration, for a new service instance."""
        clone = copy.copy(self)
        clone._obj = None
        clone._packed = False
        clone._thread_settings = None
        clone._metadata = MappingProxyType({})
        return clone

    # -- for subclasses ----------------------------------------------------
    def _validate(self, obj: Any) -> None:
        """Raise ``TypeError`` or ``ValueError`` for objects this artifact cannot store."""

    def _save(self, obj: Any, path: Path) -> None:
        raise NotImplementedError(f"{self.type_name} does not implement _save")

    def _load(self, path: Path) -> Any:
        raise NotImplementedError(f"{self.type_name} does not implement _load")

    none_is_one_thread = False  # scikit-learn's n_jobs=None is one job; XGBoost's and LightGBM's, all cores

    def _read_thread_settings(self, obj: Any) -> dict[str, Any]:
        """Optional: ``obj``'s own thread counts by name (BLAS and OpenMP pools are limited already)."""
        return {}

    def _write_thread_settings(self, obj: Any, settings: dict[str, Any]) -> None:
        """Set what :meth:`_read_thread_settings` read."""

    def __repr__(self) -> str:
        state = "packed" if self._packed else "empty"
        return f"<{self.type_name} {self.name!r} {state}>"


class ArtifactCollection(Mapping[str, BaseArtifact]):
    """``svc.artifacts``: ``['model']`` gives the artifact, ``.model`` the packed object."""

    def __init__(self, artifacts: Mapping[str, BaseArtifact]) -> None:
        self._artifacts = dict(artifacts)

    def __getitem__(self, name: str) -> BaseArtifact:
        try:
            return self._artifacts[name]
        except KeyError:
            raise ArtifactError(
                f"no artifact named {name!r}; this service declares {sorted(self._artifacts)}"
            ) from None

    def __contains__(self, name: object) -> bool:
        return name in self._artifacts

    def __iter__(self) -> Iterator[str]:
        return iter(self._artifacts)

    def __len__(self) -> int:
        return len(self._artifacts)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        return self[name].get()
