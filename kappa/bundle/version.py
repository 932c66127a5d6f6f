"""Bundle version strings: ``20261122T101500Z_3F9A2C1B`` (UTC time + 32 random bits)."""

from __future__ import annotations

import re
import secrets
from datetime import datetime, timezone

from kappa.errors import BundleError

# One pattern for every name and version that becomes a folder or a key: it starts with a
# letter, digit or _ (never ".", so "." and ".." cannot name a folder), then letters,
# digits, _ . - (no "/", no "\\", no spaces), 128 characters at most.
_VALID = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")  # whole string: fullmatch
RESERVED = frozenset({"latest"})


def new_version(now: datetime | None = None) -> str:
    stamp = (now or datetime.now(timezone.utc)).strftime("%Y%m%dT%H%M%SZ")
    return f"{stamp}_{secrets.token_hex(4).upper()}"


def validate_version(version: str) -> str:
    if not isinstance(version, str) or not _VALID.fullmatch(version):
        raise BundleError(
            f"invalid version {version!r}: use 1 to 128 characters from A-Z a-z 0-9 _ . -, "
            "starting with a letter, digit or _ (or leave version=None for a generated one)"
        )
    if version.lower() in RESERVED:
        raise BundleError(f"invalid version {version!r}: 'latest' is reserved for the newest bundle")
    return version


def validate_name(name: str) -> str:
    """A service name: the version pattern, starting with a letter or _ (it is a class name)."""
    if not isinstance(name, str) or not _VALID.fullmatch(name) or name[0].isdigit():
        raise BundleError(
            f"invalid service name {name!r}: start with a letter or _, then letters, digits, _ . -"
        )
    return name
