"""What runs on a Spark or Dask worker: the runner for an API of the bundle a driver shipped,
made once per process and kept beside the loaded bundle (see :mod:`kappa_batch.cache`)."""

from __future__ import annotations

from kappa_batch.cache import loaded
from kappa_batch.runner import BatchRunner
from kappa_batch.shipping import BundleHandle


def worker_runner(handle: BundleHandle, api: str, env_check: str) -> BatchRunner:
    """The runner for ``api`` of the bundle ``handle`` names: loaded from where the driver put it,
    verified by the driver's digest and checked against this worker's packages."""
    entry = loaded(handle, env_check)
    runner = entry.runners.get(api)
    if runner is None:
        runner = entry.runners.setdefault(api, BatchRunner(entry.service, api))
    return runner
