"""``KappaSettings``: one frozen object, built once and passed down explicitly.

Precedence, lowest first (as issue 3 lists it, highest first: ``kappa config
set``, environment, ``conf/``):

1. built-in defaults (everything under ``$KAPPA_HOME``, default ``~/kappa``)
2. ``conf/kappa.yaml`` shipped with the project (or ``$KAPPA_CONF_DIR/kappa.yaml``)
3. ``KAPPA_DB_URL`` / ``KAPPA_BASE_URL`` environment variables
4. ``$KAPPA_HOME/config.yaml``, written by ``kappa config set``
5. explicit overrides (command-line flags)

``KappaSettings.sources`` says where each value came from (``kappa info``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kappa.errors import ConfigError
from kappa.redact import redact as redact

KEYS = {
    "repository.db_url": "db_url",
    "repository.base_url": "base_url",
    "repository.db_reconnect_seconds": "db_reconnect_seconds",
    "import.max_files": "import_max_files",
    "import.max_bytes": "import_max_bytes",
    "import.max_ratio": "import_max_ratio",
    "run.max_error_rate": "run_max_error_rate",
    "run.threads_per_worker": "run_threads_per_worker",
    "gamma_service.url": "gamma_url",
    "gamma_service.token": "gamma_token",
}
ENV = {
    "KAPPA_DB_URL": "db_url",
    "KAPPA_BASE_URL": "base_url",
    "KAPPA_DB_RECONNECT_SECONDS": "db_reconnect_seconds",
    "KAPPA_IMPORT_MAX_FILES": "import_max_files",
    "KAPPA_IMPORT_MAX_BYTES": "import_max_bytes",
    "KAPPA_IMPORT_MAX_RATIO": "import_max_ratio",
    "KAPPA_RUN_MAX_ERROR_RATE": "run_max_error_rate",
    "KAPPA_RUN_THREADS_PER_WORKER": "run_threads_per_worker",
    "KAPPA_GAMMA_URL": "gamma_url",
    "KAPPA_GAMMA_TOKEN": "gamma_token",
}
# What `kappa import` accepts before it writes anything: files, bytes once extracted, and
# extracted bytes per archive byte (a gzip bomb expands far beyond any real model's ratio).
IMPORT_DEFAULTS = {"import_max_files": 10_000, "import_max_bytes": 20 * 1024**3, "import_max_ratio": 200}
# A scoring run in which more than this share of rows failed exits non-zero (1: never on rows).
DEFAULT_MAX_ERROR_RATE = 0.5
# How long a call waits for a database server that does not answer (restarting, failing over)
# before it fails with a clear error; 0: fail at once.
DEFAULT_DB_RECONNECT_SECONDS = 10.0
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


def user_config(home: Path | None = None) -> Path:
    return (home or default_home()) / USER_CONFIG


def check_key(key: str) -> str:
    if key not in KEYS:
        raise ConfigError(f"unknown setting {key!r}; known settings: {sorted(KEYS)}")
    return key


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
    """Dotted key -> value from a YAML file; unknown keys fail, null values are skipped."""
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


def write_user_config(values: Mapping[str, Any], home: Path | None = None) -> Path:
    """Write dotted key -> value settings to ``$KAPPA_HOME/config.yaml`` (atomically)."""
    import yaml

    path = user_config(home)
    nested: dict[str, dict[str, Any]] = {}
    for key, value in sorted(values.items()):
        section, _, name = check_key(key).partition(".")
        nested.setdefault(section, {})[name] = value
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial")
    # it may hold a database password: readable by its owner only, whatever the umask
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(yaml.safe_dump(nested, sort_keys=True))
    partial.replace(path)
    return path


def _positive(attr: str, value: Any, source: str) -> int:
    try:
        number = int(value)
    except (TypeError, ValueError):
        number = 0
    if number < 1 or isinstance(value, bool) or (isinstance(value, float) and value != number):
        key = next(k for k, a in KEYS.items() if a == attr)
        raise ConfigError(f"{key} must be a whole number above 0, not {value!r} (from {source})")
    return number


def _share(value: Any, source: str) -> float:
    try:
        share = float(value)
    except (TypeError, ValueError):
        share = -1.0
    if not 0 <= share <= 1:
        raise ConfigError(f"run.max_error_rate must be a number from 0 to 1, not {value!r} (from {source})")
    return share


def _seconds(value: Any, source: str) -> float:
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        seconds = -1.0
    if not 0 <= seconds < float("inf") or isinstance(value, bool):
        raise ConfigError(
            f"repository.db_reconnect_seconds must be a number of seconds, 0 or more, not {value!r} "
            f"(from {source})"
        )
    return seconds


def gamma_url(value: Any, source: str = "") -> str | None:
    """The registry server's base URL: ``http(s)://host:port``, or ``host:port`` as the
    documentation writes it (taken as ``http://``)."""
    if not value:
        return None
    text = str(value).strip()
    if "://" not in text:
        text = f"http://{text}"
    scheme, _, rest = text.partition("://")
    rest = rest.rstrip("/")
    if scheme not in ("http", "https") or not rest or rest.startswith("/"):
        raise ConfigError(
            f"gamma_service.url must be http(s)://HOST:PORT or HOST:PORT, not {value!r}"
            + (f" (from {source})" if source else "")
        )
    return f"{scheme}://{rest}"


@dataclass(frozen=True)
class KappaSettings:
    home: Path
    db_url: str
    base_url: str
    sources: Mapping[str, str] = field(default_factory=dict, compare=False)
    db_reconnect_seconds: float = DEFAULT_DB_RECONNECT_SECONDS
    import_max_files: int = IMPORT_DEFAULTS["import_max_files"]
    import_max_bytes: int = IMPORT_DEFAULTS["import_max_bytes"]
    import_max_ratio: int = IMPORT_DEFAULTS["import_max_ratio"]
    run_max_error_rate: float = DEFAULT_MAX_ERROR_RATE
    # BLAS/OpenMP threads per scoring process; None: the cores shared evenly (kappa.threads)
    run_threads_per_worker: int | None = None
    gamma_url: str | None = None  # the registry server; when set, every repository call goes there
    gamma_token: str | None = field(default=None, repr=False)

    @classmethod
    def load(
        cls, overrides: Mapping[str, Any] | None = None, environ: Mapping[str, str] | None = None
    ) -> KappaSettings:
        environ = os.environ if environ is None else environ
        home = default_home(environ)
        values: dict[str, Any] = {}
        sources: dict[str, str] = {attr: "default" for attr in KEYS.values()}

        def apply(found: Mapping[str, Any], source: str) -> None:
            for attr, value in found.items():
                values[attr] = value
                sources[attr] = source

        shipped = shipped_config()
        apply({KEYS[k]: v for k, v in read_config_file(shipped).items()}, str(shipped))
        apply({attr: environ[var] for var, attr in ENV.items() if environ.get(var)}, "environment")
        mine = user_config(home)
        apply({KEYS[k]: v for k, v in read_config_file(mine).items()}, str(mine))
        apply(
            {KEYS[check_key(k)]: v for k, v in (overrides or {}).items() if v is not None},
            "command line",
        )
        threads_key = "run_threads_per_worker"
        return cls(
            home=home,
            db_url=str(values.get("db_url") or f"sqlite:///{home / 'storage.db'}"),
            base_url=str(values.get("base_url") or home / "repository"),
            sources=sources,
            db_reconnect_seconds=(
                _seconds(values["db_reconnect_seconds"], sources["db_reconnect_seconds"])
                if values.get("db_reconnect_seconds") is not None
                else DEFAULT_DB_RECONNECT_SECONDS
            ),
            **{
                attr: _positive(attr, values[attr], sources[attr]) if attr in values else default
                for attr, default in IMPORT_DEFAULTS.items()
            },
            run_max_error_rate=(
                _share(values["run_max_error_rate"], sources["run_max_error_rate"])
                if "run_max_error_rate" in values
                else DEFAULT_MAX_ERROR_RATE
            ),
            run_threads_per_worker=(
                _positive("run_threads_per_worker", values["run_threads_per_worker"], sources[threads_key])
                if "run_threads_per_worker" in values
                else None
            ),
            gamma_url=gamma_url(values.get("gamma_url"), sources["gamma_url"]),
            gamma_token=str(values["gamma_token"]) if values.get("gamma_token") else None,
        )
