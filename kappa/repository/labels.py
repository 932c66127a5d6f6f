"""Bundle labels: validated key/value pairs used to select bundles."""

from __future__ import annotations

import re
from collections.abc import Mapping

from kappa.errors import RepositoryError

_LABEL = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9_.-]{0,61}[A-Za-z0-9])?$")


def validate_labels(labels: Mapping[str, str] | None) -> dict[str, str]:
    """Keys and values: at most 63 characters, alphanumeric at both ends, ``-_.`` inside."""
    if labels is None:
        return {}
    if not isinstance(labels, Mapping):
        raise RepositoryError(f"labels must be a mapping of strings, got {type(labels).__name__}")
    clean: dict[str, str] = {}
    for key, value in labels.items():
        for kind, text in (("key", key), ("value", value)):
            if not isinstance(text, str) or not _LABEL.match(text):
                raise RepositoryError(
                    f"invalid label {kind} {text!r} (in {key!r}: {value!r}): use 1-63 characters, "
                    "letters or digits at both ends and only - _ . inside"
                )
        clean[key] = value
    return clean
