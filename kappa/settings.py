"""``KappaSettings``: one frozen object, built once and passed down explicitly.

Precedence, lowest first: built-in defaults < ``conf/kappa.yaml`` shipped with
the project < ``$KAPPA_HOME/config.yaml`` (written by ``kappa config set``) <
``KAPPA_*`` environment variables < explicit overrides (CLI flags).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

from kappa.errors import ConfigError

KEYS = {"repository.db_url": "db_url", "repository.base_url": "base_url"}
ENV = {"KAPPA_DB_URL": "db_url", "KAPPA_BASE_URL": "base_url"}
USER_CONFIG = "config.yaml"


def default_home(environ: Mapping[str, str] | None = None) -> Path:
    environ = os.environ if environ is None else environ
    return Path(environ.get("KAPPA_HOME") or "~/kappa").expanduser()


def shipped_config() -> Path:
    """``conf/kappa.yaml`` of the source tree, or ``$KAPPA_CONF_DIR/kappa.yaml``."""
    conf_dir = os.environ.get("KAPPA_CONF_DIR")
    if conf_dir:
        return Path(conf_dir) / "kappa.yaml"
    return Path(__file__).resolve().parent.parent / "conf" / "kappa.yaml"


def _flatten(data: Any, where: Path) -> dict[str, Any]:
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping at the top level")
    flat: dict[str, Any] = {}
    for section, values in data.items():
        if not isinstance(values, dict):
            raise ConfigError(f"{where}: {section!r} must be a mapping of settings")
        for key, value in values.items():
            flat[f"{section}.{key}"] = value
    return flat


def read_config_file(path: Path) -> dict[str, Any]:
    """Dotted key -> value from a YAML file; unknown keys fail."""
    if not path.is_file():
        return {}
    import yaml

    try:
        flat = _flatten(yaml.safe_load(path.read_text(encoding="utf-8")), path)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path} is not valid YAML: {exc}") from None
    unknown = sorted(set(flat) - set(KEYS))
    if unknown:
        raise ConfigError(f"{path}: unknown setting(s) {unknown}; known: {sorted(KEYS)}")
    return {k: v for k, v in flat.items() if v is not None}


@dataclass(frozen=True)
class KappaSettings:
    home: Path
    db_url: str
    base_url: str

    @classmethod
    def load(
        cls, overrides: Mapping[str, Any] | None = None, environ: Mapping[str, str] | None = None
    ) -> KappaSettings:
        environ = os.environ if environ is None else environ
        home = default_home(environ)
        values: dict[str, Any] = {}
        for source in (read_config_file(shipped_config()), read_config_file(home / USER_CONFIG)):
            values.update({KEYS[k]: v for k, v in source.items()})
        values.update({attr: environ[var] for var, attr in ENV.items() if environ.get(var)})
        for key, value in (overrides or {}).items():
            attr = KEYS.get(key, key)
            if attr not in {f.name for f in fields(cls)}:
                raise ConfigError(f"unknown setting {key!r}; known: {sorted(KEYS)}")
            if value is not None:
                values[attr] = value
        settings = cls(
            home=home,
            db_url=str(values.get("db_url") or f"sqlite:///{home / 'storage.db'}"),
            base_url=str(values.get("base_url") or home / "repository"),
        )
        return settings

    def with_(self, **changes: Any) -> KappaSettings:
        return replace(self, **changes)
