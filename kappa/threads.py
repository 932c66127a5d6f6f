"""Each scoring process's share of the cores: its BLAS, OpenMP and framework thread pools.

A process that loads numpy (OpenBLAS), scikit-learn (OpenMP), Torch, XGBoost or LightGBM
starts thread pools as wide as the machine. Two scoring processes on two cores then run
four busy threads that preempt each other (issue 22: ``kappa run --workers 2`` on LR gave
no gain at all; with one thread per worker, 1.6-1.7x). So every process that scores
limits them to its share, by default ``cores // processes``:

* the environment variables the libraries read when they load (``OMP_NUM_THREADS``,
  ``OPENBLAS_NUM_THREADS``, ...), for libraries not loaded yet and for child processes;
* ``threadpoolctl`` for the BLAS and OpenMP libraries already loaded (numpy is, as soon as
  pyarrow is imported);
* Arrow's CPU pool (``pyarrow.set_cpu_count``) and Torch's ``set_num_threads``;
* each loaded XGBoost, LightGBM or scikit-learn model's own setting (``nthread``,
  ``num_threads``, ``n_jobs``), through :func:`follow`; a model's own values come back when
  :func:`limited` ends.
"""

from __future__ import annotations

import logging
import math
import os
import sys
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Protocol

log = logging.getLogger(__name__)

# what BLAS and OpenMP builds read when they load (MKL, OpenBLAS, BLIS, Accelerate, numexpr)
ENV_VARS = (
    "OMP_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS",
    "BLIS_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
    "NUMEXPR_NUM_THREADS",
)
SHARE_ENV = "KAPPA_THREADS_PER_WORKER"  # the share a parent decided for the processes it starts


class ThreadLimited(Protocol):
    """A loaded model that takes the limit through its own setting (see :mod:`kappa.frameworks`);
    ``None`` gives it its own settings back."""

    def limit_threads(self, threads: int | None) -> None: ...


_followed: weakref.WeakSet[ThreadLimited] = weakref.WeakSet()
_applied: int | None = None


def available_cores() -> int:
    """The cores this process may run on: its CPU affinity, capped by a cgroup CPU quota
    (a container given 2 CPUs on a 64-core host has 2)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # pragma: no cover - not Linux
        cores = os.cpu_count() or 1
    quota = _cgroup_quota()
    if quota is not None:
        cores = min(cores, max(1, math.ceil(quota)))
    return max(1, cores)


def _cgroup_quota() -> float | None:
    """CPUs the cgroup (v2 ``cpu.max``, or v1 ``cfs_quota_us``) allows; None when unlimited."""
    try:
        with open("/sys/fs/cgroup/cpu.max", encoding="ascii") as handle:
            quota, _, period = handle.read().strip().partition(" ")
        if quota != "max":
            return int(quota) / int(period or 100000)
        return None
    except (OSError, ValueError):
        pass
    try:
        with open("/sys/fs/cgroup/cpu/cpu.cfs_quota_us", encoding="ascii") as handle:
            quota_us = int(handle.read())
        with open("/sys/fs/cgroup/cpu/cpu.cfs_period_us", encoding="ascii") as handle:
            period_us = int(handle.read())
        return quota_us / period_us if quota_us > 0 and period_us > 0 else None
    except (OSError, ValueError):
        return None


def share(processes: int, threads: int | None = None, cores: int | None = None) -> int:
    """Threads for each of ``processes`` scoring processes: ``threads`` when given, else an even
    share of the cores (at least one)."""
    if threads is not None:
        return max(1, int(threads))
    return max(1, (cores or available_cores()) // max(1, processes))


def configured(given: int | None = None) -> int | None:
    """``--threads-per-worker`` when given, else the ``run.threads_per_worker`` setting (None: the
    even share); a count below one is refused."""
    if given is not None:
        if isinstance(given, bool) or not isinstance(given, int) or given < 1:
            from kappa.errors import InputError

            raise InputError(f"threads per worker must be a whole number of at least 1, not {given!r}")
        return given
    from kappa.settings import KappaSettings

    return KappaSettings.load().run_threads_per_worker


def environment(threads: int) -> dict[str, str]:
    """The variables that give a child process ``threads`` threads per pool from its start."""
    return {**{name: str(threads) for name in ENV_VARS}, SHARE_ENV: str(threads)}


def _positive_env(name: str) -> int | None:
    """The environment variable ``name`` as a count above zero, or None."""
    try:
        value = int(os.environ.get(name, ""))
    except ValueError:
        return None
    return value if value > 0 else None


def inherited() -> int | None:
    """The share a parent process set for this one (``KAPPA_THREADS_PER_WORKER``), if any."""
    return _positive_env(SHARE_ENV)


def inherited_width() -> int | None:
    """The width a parent gave this process's pools (``KAPPA_THREADS_PER_WORKER``, else
    ``OMP_NUM_THREADS``), if any."""
    return inherited() or _positive_env("OMP_NUM_THREADS")


def limit(threads: int) -> int:
    """Limit this process's thread pools to ``threads`` from now on (loaded libraries, libraries
    still to load, Torch and followed models); returns ``threads``. Safe to call again (a forked
    worker narrows what its parent set)."""
    _apply(threads)
    return max(1, int(threads))


@contextmanager
def limited(threads: int) -> Iterator[int]:
    """:func:`limit` for a block (a run called from Python): the process's own settings come back
    after it, also for libraries first loaded inside the block and for followed models."""
    global _applied
    saved = {name: os.environ.get(name) for name in (*ENV_VARS, SHARE_ENV)}
    torch = sys.modules.get("torch")
    torch_threads = torch.get_num_threads() if torch is not None else None
    loaded = _pool_paths()
    previous = _applied
    restore: Callable[[], None] = lambda: None  # noqa: E731
    try:
        restore = _apply(threads)
        yield max(1, int(threads))
    finally:
        restore()
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        _widen_new_pools(loaded)
        torch = sys.modules.get("torch")
        if torch is not None:
            torch.set_num_threads(torch_threads or _default_width())
        _applied = previous
        for model in list(_followed):
            _tell(model, previous)  # None: the model's own settings back


def _default_width() -> int:
    """What a pool loaded now would start with: ``OMP_NUM_THREADS`` if set, else every core."""
    return _positive_env("OMP_NUM_THREADS") or available_cores()


def _pool_paths() -> set[str]:
    try:
        from threadpoolctl import threadpool_info
    except ImportError:  # pragma: no cover
        return set()
    return {str(pool["filepath"]) for pool in threadpool_info()}


def _widen_new_pools(before: set[str]) -> None:
    """Pools of libraries first loaded inside :func:`limited` started at its limit (they read the
    variables it set): give them the width they would have had."""
    try:
        from threadpoolctl import ThreadpoolController
    except ImportError:  # pragma: no cover
        return
    new = [path for path in _pool_paths() if path not in before]
    if new:
        ThreadpoolController().select(filepath=new).limit(limits=_default_width())


def _tell(model: ThreadLimited, threads: int | None) -> None:
    try:
        model.limit_threads(threads)
    except Exception as exc:  # noqa: BLE001 - a model's own setting never fails a run
        log.warning("could not set the threads of %r to %s: %s", model, threads, exc)


def _apply(threads: int) -> Callable[[], None]:
    """Set the limit everywhere; returns what puts the loaded libraries' own limits back."""
    global _applied
    threads = max(1, int(threads))
    os.environ.update(environment(threads))
    restore: Callable[[], None] = lambda: None  # noqa: E731
    try:
        from threadpoolctl import threadpool_limits

        restore = threadpool_limits(limits=threads).restore_original_limits  # in force until restored
    except ImportError:  # pragma: no cover - threadpoolctl comes with scikit-learn and Kappa
        log.debug("threadpoolctl is not installed; loaded BLAS/OpenMP pools keep their width")
    torch = sys.modules.get("torch")
    if torch is not None and hasattr(torch, "set_num_threads"):
        torch.set_num_threads(threads)
    arrow = sys.modules.get("pyarrow")
    arrow_threads = arrow.cpu_count() if arrow is not None else None
    if arrow is not None:
        arrow.set_cpu_count(threads)  # Arrow's own pool: decoding, conversions to pandas
    for model in list(_followed):
        _tell(model, threads)
    _applied = threads

    def restore_all() -> None:
        restore()
        if arrow is not None and arrow_threads is not None:
            arrow.set_cpu_count(arrow_threads)

    return restore_all


def current() -> int | None:
    """The share :func:`limit` last set in this process (None: never limited)."""
    return _applied


def follow(model: ThreadLimited) -> None:
    """Keep ``model`` at this process's share: now, and whenever :func:`limit` is called again."""
    _followed.add(model)
    if _applied is not None:
        _tell(model, _applied)
