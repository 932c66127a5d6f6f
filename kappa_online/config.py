"""How ``kappa serve`` serves a bundle: one frozen config, from the command line or the environment."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

DEFAULT_MAX_BODY = 10 * 1024 * 1024


@dataclass(frozen=True)
class ServeConfig:
    bundle: str
    max_batch_size: int | None = None  # rows; None: the API decorator's mb_max_batch_size
    max_latency_ms: float | None = None  # None: the API decorator's mb_max_latency
    microbatch: bool = True
    max_body_bytes: int = DEFAULT_MAX_BODY
    digest: str | None = None  # what the repository recorded for the bundle, checked before loading
    watch: str | None = None  # the service NAME served as NAME:latest: newer versions may swap in
    poll: bool = False  # --watch: look for them every watch_interval seconds
    watch_labels: str | None = None  # only versions matching this label selector
    watch_interval: float = 30.0
    admin_token: str | None = field(default=None, repr=False)  # POST /admin/reload is on when set
    canary: str | None = None  # another version (NAME:VERSION) that takes canary_weight of the requests
    canary_weight: float = 0.1
    log_predictions: str | None = None  # a folder URL: prediction and feedback logs go under it
    log_sample: float = 1.0  # the share of requests logged
    log_format: str = "parquet"
    log_flush_seconds: float = 10.0  # a shard is written at least this often while records wait
    reload_signal: str | None = None  # --workers N: a file a reloaded worker rewrites, the others follow

    @classmethod
    def from_env(cls) -> ServeConfig:
        """For ``uvicorn --factory`` workers: the settings ``kappa serve`` put in the environment."""

        def number(name: str) -> float | None:
            value = os.environ.get(name)
            return float(value) if value else None

        rows = number("KAPPA_SERVE_MAX_BATCH_SIZE")
        weight = number("KAPPA_SERVE_CANARY_WEIGHT")
        sample = number("KAPPA_SERVE_LOG_SAMPLE")
        return cls(
            bundle=os.environ["KAPPA_SERVE_BUNDLE"],
            max_batch_size=int(rows) if rows else None,
            max_latency_ms=number("KAPPA_SERVE_MAX_LATENCY"),
            microbatch=os.environ.get("KAPPA_SERVE_MICROBATCH", "1") == "1",
            max_body_bytes=int(number("KAPPA_SERVE_MAX_BODY") or DEFAULT_MAX_BODY),
            digest=os.environ.get("KAPPA_SERVE_DIGEST") or None,
            watch=os.environ.get("KAPPA_SERVE_WATCH") or None,
            poll=os.environ.get("KAPPA_SERVE_POLL") == "1",
            watch_labels=os.environ.get("KAPPA_SERVE_WATCH_LABELS") or None,
            watch_interval=number("KAPPA_SERVE_WATCH_INTERVAL") or 30.0,
            admin_token=os.environ.get("KAPPA_SERVE_ADMIN_TOKEN") or None,
            canary=os.environ.get("KAPPA_SERVE_CANARY") or None,
            canary_weight=0.1 if weight is None else weight,
            log_predictions=os.environ.get("KAPPA_SERVE_LOG_PREDICTIONS") or None,
            log_sample=1.0 if sample is None else sample,
            log_format=os.environ.get("KAPPA_SERVE_LOG_FORMAT") or "parquet",
            log_flush_seconds=number("KAPPA_SERVE_LOG_FLUSH_SECONDS") or 10.0,
            reload_signal=os.environ.get("KAPPA_SERVE_RELOAD_SIGNAL") or None,
        )
