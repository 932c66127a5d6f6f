"""A read-only name -> ``"module:attr"`` registry whose entries are imported on first use."""

from __future__ import annotations

import importlib
from collections.abc import Iterator, Mapping
from typing import Any

from kappa.errors import KappaError


class LazyRegistry(Mapping[str, str]):
    def __init__(self, kind: str, entries: Mapping[str, str], error: type[KappaError]) -> None:
        self._kind = kind
        self._entries = dict(entries)
        self._error = error

    def __getitem__(self, name: str) -> str:
        return self._entries[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def resolve(self, name: str) -> Any:
        """Import and return the object registered under ``name``."""
        try:
            module_name, attr = self._entries[name].split(":")
        except KeyError:
            raise self._error(f"unknown {self._kind} {name!r}; known: {sorted(self._entries)}") from None
        return getattr(importlib.import_module(module_name), attr)
