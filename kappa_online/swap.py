"""Hot swap: a newer version of the served bundle replaces the serving one, without a restart.

``kappa serve NAME:latest --watch`` polls the repository (or the registry server) every
``--watch-interval`` seconds; ``POST /admin/reload`` does the same on demand. With
``--workers N`` the reload reaches one worker, which then rewrites a signal file that every
worker looks at twice a second, so all of them look for the new version at once. A candidate is
loaded and verified in a thread, its API signature compared with the serving one, warmed
with a sample request, and only then swapped in, in one assignment: a request that already
reached the old version finishes there, and the old version's dispatchers close once the
last such request has left. A candidate that fails any step is logged once and skipped;
the serving version keeps serving.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from kappa.errors import KappaError

if TYPE_CHECKING:
    from kappa.bundle.manifest import Manifest
    from kappa_online.endpoint import Endpoint
    from kappa_online.state import State

log = logging.getLogger(__name__)
RETIRE_POLL = 0.05  # seconds between looks at an old version's requests in flight
RETIRE_SECONDS = 60.0  # an old version closes after this even with a request still inside
SIGNAL_POLL = 0.5  # seconds between a worker's looks at the reload signal file
LOADER_NICE = 19  # the candidate loads in a thread the OS runs only when serving leaves it room
_loader: ThreadPoolExecutor | None = None


def loader() -> ThreadPoolExecutor:
    """The one thread candidates load and warm in, at the lowest CPU priority (Linux schedules
    threads on their own), so a swap takes CPU from serving only when serving leaves it idle."""
    global _loader
    if _loader is None:
        _loader = ThreadPoolExecutor(1, thread_name_prefix="kappa-swap", initializer=_lower_priority)
    return _loader


def _lower_priority() -> None:
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), LOADER_NICE)
    except (AttributeError, OSError):  # not Linux, or not allowed: it loads at normal priority
        pass


class SwapRefused(KappaError):
    """A candidate version that cannot replace the serving one (load, signature or warm-up)."""


def signature(manifest: Manifest) -> dict[str, tuple[str, str, bool]]:
    """What a client of each API depends on: its input type and declared input schema, and
    whether it takes batches."""
    return {
        api.name: (api.input_type, json.dumps(api.input_schema, sort_keys=True), api.batch)
        for api in manifest.apis
    }


def check_signature(serving: Manifest, candidate: Manifest) -> None:
    old, new = signature(serving), signature(candidate)
    if old == new:
        return
    changed = sorted(name for name in old.keys() | new.keys() if old.get(name) != new.get(name))
    raise SwapRefused(
        f"its API signature differs from {serving.tag}'s ({', '.join(changed)}: APIs, input types or "
        "input schemas); serve it on its own, or as the next deployment"
    )


class Swapper:
    """Finds the newest version of the watched service and swaps it in (one check at a time)."""

    def __init__(self, state: State) -> None:
        self.state = state
        self.refused: dict[str, str] = {}  # version tag -> why it is not served
        self._lock = asyncio.Lock()

    def _newest(self) -> str | None:
        from kappa.repository import open_repository

        config = self.state.config
        records = open_repository().list(config.watch, config.watch_labels, limit=1)
        return records[0].tag if records else None

    async def check(self) -> dict[str, Any]:
        """One look for a newer version; swaps it in when it loads, matches and warms up."""
        async with self._lock:
            current = self.state.manifest.tag
            loop = asyncio.get_running_loop()
            try:
                newest = await loop.run_in_executor(None, self._newest)
            except Exception as exc:  # noqa: BLE001 - a repository outage never stops serving
                log.warning("cannot look for a newer version of %s: %s", self.state.manifest.name, exc)
                return {"swapped": False, "serving": current, "error": str(exc)}
            if newest is None or newest == current:
                return {"swapped": False, "serving": current}
            if newest in self.refused:
                return {
                    "swapped": False,
                    "serving": current,
                    "refused": newest,
                    "error": self.refused[newest],
                }
            try:
                await self.state.swap_to(newest)
            except Exception as exc:  # noqa: BLE001 - any failure keeps the serving version
                why = str(exc) if isinstance(exc, KappaError) else f"{type(exc).__name__}: {exc}"
                if isinstance(exc, SwapRefused):  # the version itself is unfit: never tried again
                    self.refused[newest] = why
                    log.error("not serving %s: %s; %s keeps serving", newest, why, current)
                else:  # a download or a store that failed this time: the next look tries again
                    log.warning("cannot load %s yet: %s; %s keeps serving", newest, why, current)
                return {"swapped": False, "serving": current, "refused": newest, "error": why}
            log.info("now serving %s (was %s)", newest, current)
            return {"swapped": True, "serving": newest, "previous": current}

    async def follow(self, path: str) -> None:
        """With several workers: look for a newer version whenever another worker was asked to.
        A signal already there counts as new: a worker that was still loading when another was
        reloaded (or one started again later) looks once too."""
        seen = None
        while True:
            await asyncio.sleep(SIGNAL_POLL)
            now = _read_signal(path)
            if now != seen:
                seen = now
                if self.state.ready:
                    await self.check()

    async def run(self) -> None:
        """The ``--watch`` loop, until the server stops."""
        while True:
            await asyncio.sleep(self.state.config.watch_interval)
            if self.state.ready:
                await self.check()


def announce(path: str) -> str | None:
    """Tell the other workers to look for a newer version (atomically: they never read half a
    file). The reason they were not told, or None."""
    import tempfile
    import time

    folder = os.path.dirname(path)
    try:
        os.makedirs(folder, exist_ok=True)  # a /tmp cleaner may have removed it
        handle, staging = tempfile.mkstemp(dir=folder, prefix=".reload-")
        with os.fdopen(handle, "w") as out:
            out.write(f"{time.time_ns()} {os.getpid()}")
        os.replace(staging, path)
    except OSError as exc:
        log.warning("the other workers were not told of the reload: %s", exc)
        return str(exc)
    return None


def _read_signal(path: str) -> str | None:
    try:
        with open(path) as signal_file:
            return signal_file.read()
    except OSError:
        return None


def warm(endpoints: dict[str, Endpoint], samples: dict[str, Any]) -> None:
    """Score the latest real request of each API on the candidate, in this thread: a version
    whose code fails on it is refused before any client sees it. A row the model refuses
    (``ValueError``/``TypeError``: the request's fault) is fine; a row the code raised on, or
    answered with the wrong shape, is not."""
    from kappa_batch.scoring import score_batch

    for name, endpoint in endpoints.items():
        sample = samples.get(name)
        if sample is None:
            log.info("no request to %s yet: the candidate is loaded and verified, not warmed", name)
            continue
        try:
            scored = score_batch(endpoint.runner, sample)
        except Exception as exc:
            raise SwapRefused(
                f"its API {name} failed on a sample request: {type(exc).__name__}: {exc}"
            ) from exc
        broken = [e for e in scored.result.errors.to_pylist() if e["kind"] in ("raised", "invalid_output")]
        if broken:
            raise SwapRefused(f"its API {name} failed on a sample request: {broken[0]['message']}")


async def retire(endpoints: dict[str, Endpoint], digest: str | None = None) -> None:
    """Close an old version's dispatchers once no request is inside it any more (or after
    RETIRE_SECONDS), let the process forget its bundle (``digest``, unless another version
    shares its files), and collect it: the heap is unfrozen, collected once and frozen again,
    so the old model's memory is returned and the new one's leaves the collector's scans."""
    import gc

    from kappa_batch.cache import forget

    deadline = asyncio.get_running_loop().time() + RETIRE_SECONDS
    while any(e.in_flight for e in endpoints.values()) and asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(RETIRE_POLL)
    for endpoint in endpoints.values():
        await endpoint.dispatcher.close()
    endpoints.clear()
    if digest is not None:
        await asyncio.get_running_loop().run_in_executor(None, forget, digest)  # may wait on a load's lock
    gc.unfreeze()
    gc.collect()
    gc.freeze()
