"""Inference types that user API functions see, with BentoML 0.x semantics.

A batch API receives its inputs together with one :class:`InferenceTask` per
item (when its function takes a ``tasks`` argument). Calling
``task.discard(http_status=..., err_msg=...)`` drops that item: the function then
returns results only for the items it kept, so *discarded items plus returned
results equal the input length*. A function may also return
:class:`InferenceResult` (to attach headers) or :class:`InferenceError` (to fail
one item) in place of a plain value.

Note: :class:`kappa.types.InferenceError` is a per-item *result*; the exception
raised when a function misbehaves is :class:`kappa.errors.InferenceError`.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar, Union

JsonSerializable = Union[str, int, float, bool, None, list[Any], dict[str, Any]]
"""What ``json.loads`` can return; the item type of ``JsonInput``."""

T = TypeVar("T")


class HttpHeaders(Mapping[str, str]):
    """A request's headers, looked up case-insensitively (``headers["Accept"]``); built from the
    raw ASGI pairs only when first read, so requests whose API never looks cost nothing."""

    def __init__(self, raw: Iterable[tuple[bytes, bytes]] | Mapping[str, str] = ()) -> None:
        self._raw = raw
        self._items: dict[str, str] | None = None

    def _built(self) -> dict[str, str]:
        if self._items is None:
            raw = self._raw
            pairs = raw.items() if isinstance(raw, Mapping) else raw
            items: dict[str, str] = {}
            for key, value in pairs:
                name = key.decode("latin-1") if isinstance(key, bytes) else str(key)
                text = value.decode("latin-1") if isinstance(value, bytes) else str(value)
                name = name.lower()
                items[name] = f"{items[name]}, {text}" if name in items else text
            self._items = items
        return self._items

    def __getitem__(self, key: str) -> str:
        return self._built()[key.lower()]

    def __iter__(self) -> Iterator[str]:
        return iter(self._built())

    def __len__(self) -> int:
        return len(self._built())

    def __repr__(self) -> str:
        return f"HttpHeaders({self._built()!r})"


@dataclass
class InferenceTask(Generic[T]):
    """One input item on its way through an API.

    ``data`` is the item as the engine received it (``None`` where the engine
    hands a whole batch to the adapter), ``http_headers`` the request headers
    online (empty offline), ``row`` the item's position in its batch.
    """

    data: T | None = None
    http_headers: Mapping[str, str] = field(default_factory=dict)
    row: int = 0
    is_discarded: bool = False
    error: InferenceError | None = None

    def discard(self, http_status: int = 400, err_msg: str = "") -> None:
        """Drop this item: it gets no prediction and lands in the error table."""
        self.is_discarded = True
        self.error = InferenceError(http_status=http_status, err_msg=err_msg)


@dataclass(frozen=True)
class InferenceResult(Generic[T]):
    """A result with optional response headers (used online)."""

    data: T | None = None
    http_status: int = 200
    http_headers: Mapping[str, str] = field(default_factory=dict)
    err_msg: str = ""


@dataclass(frozen=True)
class InferenceError(InferenceResult[Any]):
    """A failed item: return it in place of a value to fail just that item."""

    http_status: int = 500
    err_msg: str = ""
