"""``kappa serve``: serve a bundle's APIs over HTTP (plugged into the ``kappa`` CLI by entry point)."""

from __future__ import annotations

import os
import shutil
import tempfile

import click

from kappa.cli._common import Environment, common_options, handles_errors, pass_env
from kappa.deploy.image import DRAIN_SECONDS


@click.command("serve")
@click.argument("bundle", metavar="BUNDLE")
@click.option("--port", type=click.IntRange(0, 65535), default=5000, show_default=True)
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--workers", type=click.IntRange(min=1), default=1, show_default=True, help="Server processes.")
@click.option(
    "--threads-per-worker",
    type=click.IntRange(min=1),
    help="BLAS/OpenMP threads of each server process (default: setting run.threads_per_worker, else "
    "the cores shared evenly by the workers).",
)
@click.option("--mb-max-batch-size", type=click.IntRange(min=1), help="Rows per batch (default: the API's).")
@click.option(
    "--mb-max-latency", type=click.IntRange(min=1), help="Latency budget in ms (default: the API's)."
)
@click.option("--disable-microbatch", is_flag=True, help="Score every request on its own.")
@click.option(
    "--max-body-bytes",
    type=click.IntRange(min=1),
    default=10 * 1024 * 1024,
    show_default=True,
    help="Larger request bodies get 413.",
)
@click.option(
    "--watch",
    is_flag=True,
    help="Poll the repository (or registry) for newer versions of NAME and swap them in without a restart.",
)
@click.option(
    "--watch-interval",
    type=click.FloatRange(min=0.1),
    default=30.0,
    show_default=True,
    help="Seconds between looks for a newer version.",
)
@click.option("--labels", "watch_labels", help="With --watch: only versions matching this label selector.")
@click.option("--canary", help="Another version (NAME:VERSION) to send a share of the requests to.")
@click.option(
    "--canary-weight",
    type=click.FloatRange(0.0, 1.0),
    default=0.1,
    show_default=True,
    help="The canary's share of requests (by a hash of X-Request-Id when sent, else at random).",
)
@click.option(
    "--log-predictions",
    metavar="URL",
    help="Log requests and answers (and POST /feedback) as shards under this folder or fsspec URL.",
)
@click.option("--log-sample", type=click.FloatRange(0.0, 1.0), default=1.0, show_default=True)
@click.option("--log-format", type=click.Choice(["parquet", "jsonl"]), default="parquet", show_default=True)
@click.option(
    "--log-flush-seconds",
    type=click.FloatRange(min=0.1),
    default=10.0,
    show_default=True,
    help="Write a log shard at least this often while records wait (and at 50,000 rows).",
)
@common_options
@pass_env
@handles_errors
def serve_command(
    env: Environment,
    /,
    bundle: str,
    port: int,
    host: str,
    workers: int,
    threads_per_worker: int | None,
    mb_max_batch_size: int | None,
    mb_max_latency: int | None,
    disable_microbatch: bool,
    max_body_bytes: int,
    watch: bool,
    watch_interval: float,
    watch_labels: str | None,
    canary: str | None,
    canary_weight: float,
    log_predictions: str | None,
    log_sample: float,
    log_format: str,
    log_flush_seconds: float,
) -> None:
    """Serve BUNDLE (a path, URL or NAME[:VERSION|:latest]): POST /<api>, /docs, /metrics, /v2/..."""
    from kappa import threads
    from kappa.bundle.load import locate
    from kappa.bundle.manifest import load_manifest
    from kappa.errors import InputError

    watched = _watched(bundle, watch, watch_labels)
    if watch and canary and not watch_labels:
        raise InputError(
            "--watch would swap the newest version (often the canary) in for everyone: give --labels to "
            "say which versions it follows (e.g. --labels stage=prod), or leave out --watch"
        )
    if watched is not None and watch_labels:
        bundle = _newest(watched, watch_labels)
    located = locate(bundle)  # a bad reference (or a tampered bundle) fails here, with its message
    manifest = load_manifest(located.path)
    os.environ["KAPPA_SERVE_BUNDLE"] = bundle if "://" in bundle else str(located.path)
    os.environ["KAPPA_SERVE_DIGEST"] = located.digest or ""
    os.environ["KAPPA_SERVE_MAX_BATCH_SIZE"] = str(mb_max_batch_size or "")
    os.environ["KAPPA_SERVE_MAX_LATENCY"] = str(mb_max_latency or "")
    os.environ["KAPPA_SERVE_MICROBATCH"] = "0" if disable_microbatch else "1"
    os.environ["KAPPA_SERVE_MAX_BODY"] = str(max_body_bytes)
    os.environ["KAPPA_SERVE_WATCH"] = watched or ""
    os.environ["KAPPA_SERVE_POLL"] = "1" if watch else "0"
    os.environ["KAPPA_SERVE_WATCH_LABELS"] = watch_labels or ""
    os.environ["KAPPA_SERVE_WATCH_INTERVAL"] = str(watch_interval)
    if canary:
        canary = _canary(canary)
    os.environ["KAPPA_SERVE_CANARY"] = canary or ""
    os.environ["KAPPA_SERVE_CANARY_WEIGHT"] = str(canary_weight)
    os.environ["KAPPA_SERVE_LOG_PREDICTIONS"] = _absolute(log_predictions) if log_predictions else ""
    os.environ["KAPPA_SERVE_LOG_SAMPLE"] = str(log_sample)
    os.environ["KAPPA_SERVE_LOG_FORMAT"] = log_format
    os.environ["KAPPA_SERVE_LOG_FLUSH_SECONDS"] = str(log_flush_seconds)
    share = threads.share(workers, threads.configured(threads_per_worker))
    os.environ.update(threads.environment(share))  # read by each worker before numpy or a model loads
    env.info(
        f"serving {manifest.tag} on http://{host}:{port} with {workers} worker(s) of {share} thread(s); "
        "docs at /docs"
    )
    metrics_dir = signal_dir = None
    if workers > 1 and not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        # every worker writes its metrics here, so /metrics on any worker reports them all
        metrics_dir = tempfile.mkdtemp(prefix="kappa-metrics-")
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
    os.environ.pop("KAPPA_SERVE_RELOAD_SIGNAL", None)  # never one inherited from another server
    if workers > 1 and watched:
        # POST /admin/reload reaches one worker: it rewrites this file, the others follow
        signal_dir = tempfile.mkdtemp(prefix="kappa-reload-")
        os.environ["KAPPA_SERVE_RELOAD_SIGNAL"] = os.path.join(signal_dir, "reload")
    try:
        from kappa.http_serve import run

        run(
            "kappa_online.app:create_app",
            factory=True,
            host=host,
            port=port,
            workers=workers,
            log_level="warning",
            access_log=False,
            timeout_graceful_shutdown=DRAIN_SECONDS,  # Kubernetes' grace period covers it (kappa k8s)
        )
    finally:
        for folder in (metrics_dir, signal_dir):
            if folder is not None:
                shutil.rmtree(folder, ignore_errors=True)


def _watched(bundle: str, watch: bool, labels: str | None) -> str | None:
    """The service NAME when BUNDLE is ``NAME[:latest]`` (its newer versions may swap in: with
    --watch, or on POST /admin/reload); None for a fixed version or a folder."""
    from kappa.bundle.load import looks_like_path
    from kappa.errors import InputError
    from kappa.repository.reference import parse_ref

    if labels and not watch:
        raise InputError("--labels selects the versions --watch swaps in; add --watch")
    if looks_like_path(bundle):
        if watch:
            raise InputError(
                f"--watch follows a repository reference (NAME or NAME:latest), not the path {bundle!r}"
            )
        return None
    ref = parse_ref(bundle)
    if not ref.is_latest:
        if watch:
            raise InputError(
                f"--watch follows NAME:latest, not the fixed version {ref}; serve {ref.name}:latest"
            )
        return None
    return ref.name


def _absolute(url: str) -> str:
    return url if "://" in url else os.path.abspath(os.path.expanduser(url))


def _canary(ref: str) -> str:
    """The canary as workers load it: a repository version by its tag, a path made absolute."""
    from kappa.bundle.load import locate, looks_like_path
    from kappa.bundle.manifest import load_manifest

    located = locate(ref)  # a bad reference fails here, with its message
    if looks_like_path(ref):
        return ref if "://" in ref else str(located.path)
    return load_manifest(located.path).tag


def _newest(name: str, labels: str) -> str:
    from kappa.errors import BundleNotFound
    from kappa.repository import open_repository

    records = open_repository().list(name, labels, limit=1)
    if not records:
        raise BundleNotFound(f"no version of {name} matches {labels!r}; `kappa get {name}` lists them")
    return records[0].tag


serve_gunicorn_command = click.Command(
    "serve-gunicorn",
    params=serve_command.params,
    callback=serve_command.callback,
    help="Same as `kappa serve` (uvicorn worker processes on one port).",
)


@click.command("open-api-spec")
@click.argument("bundle", metavar="BUNDLE")
@common_options
@pass_env
@handles_errors
def open_api_spec_command(env: Environment, bundle: str) -> None:
    """Print the OpenAPI document that `kappa serve BUNDLE` serves at /openapi.json."""
    import json

    from kappa_batch.cache import load_service
    from kappa_online.openapi import openapi_document

    service, manifest = load_service(bundle)
    click.echo(json.dumps(openapi_document(manifest, service.inference_apis), indent=2))
