"""What runs on a Spark or Dask worker: the runner for an API of the bundle a driver shipped,
made once per process and kept beside the loaded bundle (see :mod:`kappa_batch.cache`), in a
process held to its share of the cores (see :mod:`kappa.threads`)."""

from __future__ import annotations

from collections.abc import Mapping

from kappa import threads as pools
from kappa_batch.cache import loaded
from kappa_batch.runner import BatchRunner
from kappa_batch.shipping import BundleHandle

# what the driver decided: one count, a count per Dask worker address, or None (the engine's own)
Share = int | Mapping[str, int] | None


def worker_runner(handle: BundleHandle, api: str, env_check: str, threads: Share = None) -> BatchRunner:
    """The runner for ``api`` of the bundle ``handle`` names: loaded from where the driver put it,
    verified by the driver's digest and checked against this worker's packages."""
    hold_share(threads)
    entry = loaded(handle, env_check)
    runner = entry.runners.get(api)
    if runner is None:
        runner = entry.runners.setdefault(api, BatchRunner(entry.service, api))
    return runner


def hold_share(threads: Share) -> int | None:
    """Limit this worker process's thread pools: to ``threads`` (for a Dask worker, its own entry
    in the driver's map), else to the cores a Spark task is given (``spark.task.cpus``), else, on a
    Dask worker the driver did not know of, to its cores over its threads. Elsewhere (Dask's
    threads in the caller's own process) the process is left as it is."""
    if isinstance(threads, Mapping):
        threads = threads.get(_dask_address() or "") or _dask_worker_share()
    want = threads or _spark_task_cpus() or _dask_worker_share()
    if want is not None and pools.current() != want:
        pools.limit(want)
    return want


def _spark_task_cpus() -> int | None:
    try:
        from pyspark import TaskContext
    except ImportError:
        return None
    context = TaskContext.get()
    return int(context.cpus()) if context is not None else None


def _dask_worker() -> object | None:
    try:
        from distributed import get_worker

        return get_worker()  # type: ignore[no-any-return]
    except (ImportError, ValueError):  # not in a Dask task
        return None


def _dask_address() -> str | None:
    worker = _dask_worker()
    return str(getattr(worker, "address", "")) if worker is not None else None


def _dask_worker_share() -> int | None:
    """A Dask worker that joined after the driver looked: the variables its nanny set
    (``OMP_NUM_THREADS``), else its cores over its own threads."""
    worker = _dask_worker()
    if worker is None:
        return None
    share = pools.inherited_width()
    if share is not None:
        return share
    nthreads = getattr(getattr(worker, "state", None), "nthreads", None) or getattr(worker, "nthreads", 1)
    return pools.share(int(nthreads or 1))


def host_cores() -> tuple[str, int]:
    """(host, cores) of the process it runs in (run on every Dask worker by :func:`dask_shares`)."""
    import socket

    return socket.gethostname(), pools.available_cores()


def dask_share(client: object | None, threads: int | None) -> Share:
    """What Dask workers are held to: ``threads`` when given (also on workers that join later),
    else :func:`dask_shares` of ``client``'s workers; None without a client (Dask's threads in
    the caller's own process, which is left alone)."""
    if threads is not None or client is None:
        return threads
    return dask_shares(client)


def dask_shares(client: object) -> dict[str, int]:
    """Threads per Dask worker address: each host's cores shared evenly by the Dask threads on
    that host (a task calls BLAS from each of its worker's threads, so two single-threaded
    workers on two cores get 1 each). Workers that join later find their own share
    (:func:`hold_share`)."""
    nthreads: dict[str, int] = client.nthreads()  # type: ignore[attr-defined]
    found: dict[str, tuple[str, int]] = client.run(host_cores)  # type: ignore[attr-defined]
    on_host: dict[str, int] = {}
    for address, (host, _) in found.items():
        on_host[host] = on_host.get(host, 0) + nthreads.get(address, 1)
    return {address: max(1, cores // on_host[host]) for address, (host, cores) in found.items()}
