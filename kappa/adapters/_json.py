"""JSON encoding that understands numpy and pandas scalars."""

from __future__ import annotations

import datetime as _dt
import json
from typing import Any


def _default(obj: Any) -> Any:
    item = getattr(obj, "item", None)
    tolist = getattr(obj, "tolist", None)
    if tolist is not None and getattr(obj, "ndim", 0) > 0:
        return tolist()
    if item is not None:
        return item()
    if isinstance(obj, (_dt.datetime, _dt.date)):
        return obj.isoformat()
    if isinstance(obj, (bytes, bytearray)):
        return obj.decode("utf-8", errors="replace")
    if isinstance(obj, (set, frozenset, tuple)):
        return list(obj)
    to_dict = getattr(obj, "to_dict", None)
    if to_dict is not None:
        return to_dict()
    raise TypeError(f"{type(obj).__name__} is not JSON serializable")


def dumps(obj: Any) -> str:
    """``json.dumps`` with numpy/pandas support and no NaN (it becomes null)."""
    return json.dumps(obj, default=_default, allow_nan=True, separators=(",", ":"))


def parse_body(body: bytes) -> Any:
    """A request body's JSON; every problem is an :class:`~kappa.errors.InputError`."""
    from kappa.errors import InputError

    if not body.strip():
        raise InputError("the request body is empty; send JSON")
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InputError(f"the request body is not valid JSON: {exc}") from None
    except RecursionError:
        raise InputError("the request body's JSON is nested too deeply; send rows of plain values") from None


def is_json(media_type: str) -> bool:
    """JSON, or no content type at all (curl's default is form-encoded only with -d)."""
    return media_type in ("application/json", "", "text/plain") or media_type.endswith("+json")
