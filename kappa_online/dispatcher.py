"""Adaptive micro-batching: concurrent requests to one API become one Arrow batch.

One dispatcher per API feeds a single model thread, in arrival order:

* **No idle waiting by default.** When the model is free, everything queued (up to
  ``max_batch_rows`` rows) goes at once; under load, batches grow by themselves while
  the previous one runs. A lone request is never held back.
* **Waiting only when it pays** (the Clipper / BentoML 0.x idea, with a cost model):
  a batch costs about ``overhead + per_row * rows``, fitted online from measured
  batches. Holding the queue for the expected gap to the next request costs every
  queued request that gap and saves one batch overhead, so the dispatcher waits only
  while ``queued * gap < overhead``, the oldest request can still make its deadline, and
  fewer requests wait than were recently seen waiting at once (when they all wait, the
  clients are all waiting on us and no one else will come).
* **Load shedding, on measured waits only.** A new request is refused at once with
  :class:`Overloaded` (HTTP 503 with ``Retry-After``) while the oldest queued request (or
  the batch in flight) has already waited longer than the bound; a queued request that has
  waited that long before it is dispatched is refused the same way instead of being served
  later still. The bound is ``max_latency``, or twice the measured time of recent batches
  when that is longer (up to ``SHED_FACTOR x max_latency``): a wait of one batch is not a
  queue, it is what one batch costs on this machine now, and refusing it would turn a slow
  machine's every request away (a busy 2-core machine runs a RandomForest batch longer than a
  50 ms budget).
  The cost model's estimates never refuse a request by themselves (an estimate fitted on
  one-row batches would otherwise refuse every large request of an idle server, for ever,
  since a refused request never teaches the model otherwise); they only steer waiting.
* **Isolation.** Requests join a batch only with requests of the same Arrow schema; if a
  whole batch is refused as input (``InputError``) its requests run one by one, so a bad
  request gets its own error and the others succeed.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from kappa.errors import InputError, KappaError
from kappa_batch.scoring import ScoredBatch

log = logging.getLogger(__name__)

# Batches predicted to take less run on the event loop: handing them to the model thread
# costs a GIL ping-pong with the loop (measured: RF p50 9.5 ms -> 5.9 ms at 1 connection).
INLINE_SECONDS = 0.05
SHED_FACTOR = 3.0  # the wait bound grows with measured batch times up to this many max_latency


class Overloaded(KappaError):
    """The request cannot be served within the latency budget; retry after ``retry_after`` s."""

    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after


@dataclass(frozen=True)
class Scored:
    """One request's share of a batch (its rows, numbered from 0), and how it was batched."""

    rows: ScoredBatch
    batch_rows: int  # rows in the batch it was scored in
    queue_seconds: float


class CostModel:
    """``seconds ~ overhead + per_row * rows``, an exponentially weighted least-squares fit."""

    def __init__(self, decay: float = 0.95, half_life: float = 60.0) -> None:
        self.decay = decay
        self.half_life = half_life  # seconds: what was measured long ago counts for less
        self.n = self.sx = self.sy = self.sxx = self.sxy = 0.0
        self.observations = 0
        self._last = time.monotonic()

    def observe(self, rows: int, seconds: float) -> None:
        now = time.monotonic()
        d = self.decay * 0.5 ** ((now - self._last) / self.half_life)
        self._last = now
        self.n = d * self.n + 1
        self.sx = d * self.sx + rows
        self.sy = d * self.sy + seconds
        self.sxx = d * self.sxx + rows * rows
        self.sxy = d * self.sxy + rows * seconds
        self.observations += 1

    @property
    def per_row(self) -> float:
        spread = self.n * self.sxx - self.sx * self.sx
        if self.n == 0 or spread <= 1e-9 * max(1.0, self.sxx * self.n):
            return self.sy / self.sx if self.sx else 0.0  # one batch size seen: all cost per row
        return max(0.0, (self.n * self.sxy - self.sx * self.sy) / spread)

    @property
    def overhead(self) -> float:
        if self.n == 0:
            return 0.0
        return max(0.0, (self.sy - self.per_row * self.sx) / self.n)

    def predict(self, rows: int) -> float:
        return self.overhead + self.per_row * rows


@dataclass
class _Request:
    batch: pa.RecordBatch
    arrived: float
    future: asyncio.Future[Scored]
    headers: Any = None  # the request's headers (raw ASGI pairs), for task.http_headers
    rows: int = field(init=False)

    def __post_init__(self) -> None:
        self.rows = self.batch.num_rows


class Dispatcher:
    """Batches requests for ``score`` (:func:`kappa_batch.scoring.score_batch` with a runner), one
    batch at a time."""

    def __init__(
        self,
        score: Callable[..., ScoredBatch],  # (table) or (table, per-row headers)
        max_batch_rows: int = 1000,
        max_latency_ms: float = 300,
        enabled: bool = True,
        name: str = "api",
    ) -> None:
        self.score, self.name, self.enabled = score, name, enabled
        self.max_batch_rows = max(1, max_batch_rows)
        self.max_latency = max_latency_ms / 1000
        self.model = CostModel()
        self.queue: deque[_Request] = deque()
        self.queued_rows = 0
        self.gap = math.inf  # EWMA of the time between arrivals
        self._last_arrival: float | None = None
        self._running_since: float | None = None  # when the batch in flight started
        self._peak = 1.0  # decaying maximum of requests waiting at a dispatch: the clients seen at once
        self._wakeup = asyncio.Event()
        self._closing = False
        self._task: asyncio.Task[None] | None = None
        self._executor = ThreadPoolExecutor(1, thread_name_prefix=f"kappa-{name}")
        self.batch_seconds = 0.0  # EWMA of measured batch times
        self.observers: list[Callable[[int, float], None]] = []  # (batch rows, seconds)

    # -- lifecycle ----------------------------------------------------------------------------
    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._loop(), name=f"dispatcher-{self.name}")

    async def close(self) -> None:
        """Serve everything queued, then stop."""
        self._closing = True
        self._wakeup.set()
        if self._task is not None:
            await self._task
        self._executor.shutdown(wait=True)

    # -- requests -----------------------------------------------------------------------------
    async def submit(self, batch: pa.RecordBatch, headers: Any = None) -> Scored:
        now = time.monotonic()
        refused = self.refusal(now)
        if refused is not None:
            raise refused
        self._note_arrival(now)
        future: asyncio.Future[Scored] = asyncio.get_running_loop().create_future()
        self.queue.append(_Request(batch, now, future, headers))
        self.queued_rows += batch.num_rows
        self._wakeup.set()
        return await future

    def refusal(self, now: float | None = None) -> Overloaded | None:
        """Why a request arriving now would be refused (measured waits only), or None to admit it.
        Cheap: the endpoint asks before it decodes a body."""
        now = time.monotonic() if now is None else now
        if self._closing:
            return Overloaded("the server is shutting down", retry_after=1)
        waited, bound = self._oldest_wait(now), self.bound()
        if waited > bound:
            return Overloaded(
                f"API {self.name} is over capacity: queued requests have waited {waited * 1000:.0f} ms, "
                f"more than its {bound * 1000:.0f} ms bound",
                retry_after=max(1.0, math.ceil(waited)),
            )
        return None

    def bound(self) -> float:
        """How long a queued request may wait: the budget, or two measured batches when longer."""
        return min(SHED_FACTOR * self.max_latency, max(self.max_latency, 2 * self.batch_seconds))

    def _note_arrival(self, now: float) -> None:
        if self._last_arrival is not None:
            gap = now - self._last_arrival
            self.gap = gap if math.isinf(self.gap) else 0.8 * self.gap + 0.2 * gap
        self._last_arrival = now

    def _oldest_wait(self, now: float) -> float:
        """Measured, never estimated: how long the oldest request still queued has waited, or
        how long the batch in flight has run (a new request waits at least that long)."""
        running = now - self._running_since if self._running_since is not None else 0.0
        for request in self.queue:
            if not request.future.done():
                return max(running, now - request.arrived)
        return running

    # -- the loop -----------------------------------------------------------------------------
    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            if not self.queue:
                if self._closing:
                    return
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            await self._maybe_wait()
            self._shed_late(time.monotonic())
            taken = self._take()
            if taken:
                await self._dispatch(loop, taken)

    async def _dispatch(self, loop: asyncio.AbstractEventLoop, taken: list[_Request]) -> None:
        rows = sum(r.rows for r in taken)
        start = self._running_since = time.monotonic()
        try:
            table = pa.Table.from_batches([r.batch for r in taken]) if len(taken) > 1 else taken[0].batch
            score = self._scorer(taken)
            if self.model.observations >= 3 and self.model.predict(rows) < INLINE_SECONDS:
                result = score(table)  # shorter than a thread hand-off: run it right here
            else:
                result = await loop.run_in_executor(self._executor, score, table)
            elapsed = time.monotonic() - start
            self.model.observe(rows, elapsed)
            self.batch_seconds = 0.8 * self.batch_seconds + 0.2 * elapsed if self.batch_seconds else elapsed
            for observer in self.observers:
                observer(rows, elapsed)
            self._answer(taken, result, rows, start)
        except InputError as exc:
            await self._one_by_one(taken, exc)
        except Exception as exc:  # noqa: BLE001 - every waiting request must get an answer
            log.exception("API %s: a batch of %d request(s) failed", self.name, len(taken))
            for request in taken:
                if not request.future.done():
                    request.future.set_exception(exc)
        finally:
            self._running_since = None

    def _scorer(self, taken: list[_Request]) -> Callable[[Any], Any]:
        """``score``, given each row's request headers when any request brought some."""
        if all(r.headers is None for r in taken):
            return self.score
        from kappa.types import HttpHeaders

        rows: list[Any] = []
        for request in taken:
            rows += [HttpHeaders(request.headers or ())] * request.rows
        return lambda table: self.score(table, rows)

    async def _maybe_wait(self) -> None:
        """Hold the queue for the next arrival only while that saves more than it costs."""
        if not self.enabled or self._closing or self.model.observations < 3:
            return
        self._peak = max(float(len(self.queue)), 0.98 * self._peak)
        if len(self.queue) >= self._peak:  # as many waiting as were ever seen at once: no one else comes
            return
        while self.queue and self.queued_rows < self.max_batch_rows:
            gap = self.gap
            oldest = time.monotonic() - self.queue[0].arrived
            fits = oldest + gap + self.model.predict(self.queued_rows + 1) < self.max_latency / 2
            if math.isinf(gap) or len(self.queue) * gap >= self.model.overhead or not fits:
                return
            self._wakeup.clear()
            try:
                await asyncio.wait_for(self._wakeup.wait(), timeout=gap)
            except TimeoutError:
                return

    def _shed_late(self, now: float) -> None:
        bound = self.bound()
        while self.queue:
            head = self.queue[0]
            late = now - head.arrived > bound
            if not late and not head.future.done():
                return
            self.queue.popleft()
            self.queued_rows -= head.rows
            if not head.future.done():
                head.future.set_exception(
                    Overloaded(f"API {self.name} could not serve this request within its budget", 1)
                )

    def _take(self) -> list[_Request]:
        """Requests in arrival order, up to the row cap, sharing the first one's schema."""
        taken: list[_Request] = []
        rows = 0
        while self.queue:
            head = self.queue[0]
            if head.future.done():  # the client went away
                self.queue.popleft()
                self.queued_rows -= head.rows
                continue
            if taken and (
                not self.enabled
                or rows + head.rows > self.max_batch_rows
                or not head.batch.schema.equals(taken[0].batch.schema)
            ):
                break
            self.queue.popleft()
            self.queued_rows -= head.rows
            taken.append(head)
            rows += head.rows
        return taken

    def _answer(self, taken: list[_Request], result: ScoredBatch, rows: int, start: float) -> None:
        for request, mine in zip(taken, result.split([r.rows for r in taken]), strict=True):
            if not request.future.done():
                request.future.set_result(Scored(mine, rows, start - request.arrived))

    async def _one_by_one(self, taken: list[_Request], first: InputError) -> None:
        loop = asyncio.get_running_loop()
        if len(taken) == 1:
            if not taken[0].future.done():
                taken[0].future.set_exception(first)
            return
        for request in taken:
            start = time.monotonic()
            try:
                result = await loop.run_in_executor(self._executor, self._scorer([request]), request.batch)
            except Exception as exc:  # noqa: BLE001 - answered to its own request
                if not request.future.done():
                    request.future.set_exception(exc)
                continue
            self._answer([request], result, request.rows, start)
