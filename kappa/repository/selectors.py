"""Label selectors: ``k=v``, ``k!=v``, ``k In (a, b)``, ``k NotIn (a, b)``, ``k Exists``,
``k DoesNotExist``; a comma means AND. Keywords are case-insensitive.

As the documentation defines them, ``k!=v`` and ``k NotIn (a, b)`` select bundles that
*have* the label ``k`` with another value; ``k DoesNotExist`` selects those that lack it.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from kappa.errors import SelectorError

_TOKEN = r"[A-Za-z0-9]([A-Za-z0-9_.-]{0,61}[A-Za-z0-9])?"
_EQUALITY = re.compile(rf"^(?P<key>{_TOKEN})\s*(?P<op>==|=|!=)\s*(?P<value>{_TOKEN})$")
_SET = re.compile(rf"^(?P<key>{_TOKEN})\s+(?P<op>in|notin)\s*\((?P<values>[^()]*)\)$", re.IGNORECASE)
_EXISTS = re.compile(rf"^(?P<key>{_TOKEN})\s+(?P<op>exists|doesnotexist)$", re.IGNORECASE)
_VALUE = re.compile(rf"^{_TOKEN}$")

FORMS = "k=v, k!=v, k In (a, b), k NotIn (a, b), k Exists, k DoesNotExist"


@dataclass(frozen=True)
class Requirement:
    key: str
    op: str  # "=", "!=", "in", "notin", "exists", "doesnotexist"
    values: frozenset[str] = frozenset()

    def matches(self, labels: Mapping[str, str]) -> bool:
        present = self.key in labels
        value = labels.get(self.key)
        checks: dict[str, Callable[[], bool]] = {
            "=": lambda: present and value in self.values,
            "!=": lambda: present and value not in self.values,
            "in": lambda: present and value in self.values,
            "notin": lambda: present and value not in self.values,
            "exists": lambda: present,
            "doesnotexist": lambda: not present,
        }
        return checks[self.op]()


@dataclass(frozen=True)
class Selector:
    text: str
    requirements: tuple[Requirement, ...]

    def matches(self, labels: Mapping[str, str]) -> bool:
        return all(r.matches(labels) for r in self.requirements)


def _split(text: str) -> list[tuple[int, str]]:
    """Split on commas outside parentheses, keeping each part's offset."""
    parts: list[tuple[int, str]] = []
    depth, start = 0, 0
    for index, char in enumerate(text):
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        elif char == "," and depth == 0:
            parts.append((start, text[start:index]))
            start = index + 1
    parts.append((start, text[start:]))
    return parts


def _fail(text: str, offset: int, part: str, why: str) -> SelectorError:
    stripped = part.strip()
    column = offset + (len(part) - len(part.lstrip()))
    pointer = " " * column + "^" * max(1, len(stripped))
    return SelectorError(
        f"bad label selector: {why} in {stripped!r}\n  {text}\n  {pointer}\nuse one of: {FORMS}"
    )


def _parse_one(text: str, offset: int, part: str) -> Requirement:
    stripped = part.strip()
    if not stripped:
        raise _fail(text, offset, part or " ", "empty requirement (a stray comma?)")
    match = _EQUALITY.match(stripped)
    if match:
        op = "=" if match["op"] in ("=", "==") else "!="
        return Requirement(match["key"], op, frozenset([match["value"]]))
    match = _SET.match(stripped)
    if match:
        values = [v.strip() for v in match["values"].split(",")]
        bad = [v for v in values if not _VALUE.match(v)]
        if bad or not values:
            raise _fail(text, offset, part, f"bad value(s) {bad} in the set")
        return Requirement(match["key"], match["op"].lower(), frozenset(values))
    match = _EXISTS.match(stripped)
    if match:
        return Requirement(match["key"], match["op"].lower())
    if stripped.count("(") != stripped.count(")"):
        raise _fail(text, offset, part, "unbalanced parentheses")
    raise _fail(text, offset, part, "cannot parse this requirement")


def parse_selector(text: str) -> Selector:
    if not isinstance(text, str) or not text.strip():
        raise SelectorError(f"empty label selector; use one of: {FORMS}")
    requirements = tuple(_parse_one(text, offset, part) for offset, part in _split(text))
    return Selector(text, requirements)
