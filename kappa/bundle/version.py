"""Bundle version strings: ``20261122T101500Z_3F9A2C1B`` (UTC time + 32 random bits)."""

from __future__ import annotations

import re
import secrets
from datetime import datetime, timezone

from kappa.errors import BundleError

_VALID = re.compile(r"^[A-Za-z0-9_.-]{1,128}$")
RESERVED = frozenset({"latest"})


def new_version(now: datetime | None = None) -> str:
    stamp = (now or datetime.now(timezone.utc)).strftime("%Y%m%dT%H%M%SZ")
    return f"{stamp}_{secrets.token_hex(4).upper()}"


def validate_version(version: str) -> str:
    if not isinstance(version, str) or not _VALID.match(version):
        raise BundleError(
            f"invalid version {version!r}: use 1 to 128 characters from A-Z a-z 0-9 _ . - "
            "(or leave version=None for a generated one)"
        )
    if version.lower() in RESERVED:
        raise BundleError(f"invalid version {version!r}: 'latest' is reserved for the newest bundle")
    return version


_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]{0,127}$")


def validate_name(name: str) -> str:
    if not isinstance(name, str) or not _NAME.match(name):
        raise BundleError(
            f"invalid service name {name!r}: start with a letter or _, then letters, digits, _ . -"
        )
    return name
