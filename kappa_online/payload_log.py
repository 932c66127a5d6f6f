"""Prediction and feedback logging: what was asked, what was answered, and what came true later.

``kappa serve --log-predictions URL`` writes one row per predicted input row (its input
columns under their own names, then ``_request_id``, ``_row``, ``_time``, ``_version``,
``_api``, ``_status``, ``_latency_ms``, and the answer: ``_output``, or ``_output_<column>``
for each of several output columns, in their own Arrow types) to Parquet (or JSON Lines)
shards under ``URL/predictions/``; ``POST /feedback`` appends to ``URL/feedback/``. The two
join on the request id, and ``kappa run`` reads the prediction shards as input (the logs are
the next model's scoring data).

Serving never waits for the log: a request hands over references to what it already holds
(its decoded Arrow batch, its Arrow outputs) with one append to a bounded deque (no lock,
no wake-up); a background thread takes them a few times a second and writes them in shards
(by size and by time) through ``kappa run``'s shard writer
(:func:`kappa_batch.shards.put_table`: each shard whole or not at all, written under a
hidden name and moved into place), converting whole shards at once. When the deque is full, or a shard
cannot be written (the store is down), its records are dropped and counted
(``kappa_prediction_log_dropped_total``); on shutdown what waits is written within the drain time.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import socket
import threading
import time
from collections import deque
from typing import TYPE_CHECKING, Any, NamedTuple

if TYPE_CHECKING:
    import pyarrow as pa

log = logging.getLogger(__name__)
FORMATS = ("parquet", "jsonl")
SHARD_ROWS = 50_000  # a shard is written when this many rows wait...
SHARD_SECONDS = 10.0  # ...or when the oldest has waited this long
QUEUE_REQUESTS = 100_000  # requests waiting for the writer; past this they are dropped and counted
QUEUE_BYTES = 256 * 1024**2  # ...and past this many bytes of their inputs and outputs
SHARD_BYTES = 128 * 1024**2  # a shard is written when this many bytes wait (whichever comes first)
POLL_SECONDS = 0.25  # how often the writer takes what waits
META = ("_request_id", "_row", "_time", "_version", "_api", "_status", "_latency_ms")


class Prediction(NamedTuple):  # a tuple: the cheapest record a request can hand over
    request_id: str
    time: float
    version: str
    api: str
    status: int
    latency_ms: float
    inputs: pa.RecordBatch | None  # None when the body could not be read
    outputs: pa.Table | None  # aligned to the input rows; None on a failed request


class ShardWriter:
    """A background thread that writes what it is given as shards under one folder URL."""

    def __init__(
        self,
        url: str,
        kind: str,
        fmt: str,
        build: Any,
        on_drop: Any,
        on_write: Any = None,
        shard_rows: int = SHARD_ROWS,
        shard_seconds: float = SHARD_SECONDS,
    ) -> None:
        from kappa_batch.io import filesystem, is_local_fs

        self.url = f"{url.rstrip('/')}/{kind}"
        self.fs, self.root = filesystem(self.url)
        if is_local_fs(self.fs):
            os.makedirs(self.root, exist_ok=True)
        self.fmt, self.build, self.on_drop, self.on_write = fmt, build, on_drop, on_write
        self.shard_rows, self.shard_seconds = shard_rows, shard_seconds
        self.waiting: deque[tuple[Any, int, int]] = deque()  # appends and pops are atomic: no lock
        self.waiting_bytes = 0  # approximate (two threads update it): a budget, not an account
        self._tag = f"{socket.gethostname()[:32]}-{os.getpid()}-{secrets.token_hex(3)}"  # unique across pods
        self._closing = threading.Event()
        self._seq = 0
        self._warned = 0.0
        self._thread = threading.Thread(target=self._run, name=f"kappa-log-{kind}", daemon=True)
        self._thread.start()

    def put(self, item: Any, rows: int, size: int = 0) -> None:
        """Hand ``item`` (``size`` bytes) to the writer; never blocks: past QUEUE_REQUESTS requests
        or QUEUE_BYTES bytes waiting, it is dropped and counted."""
        if len(self.waiting) >= QUEUE_REQUESTS or self.waiting_bytes + size > QUEUE_BYTES:
            self.on_drop(rows)
            return
        self.waiting_bytes += size
        self.waiting.append((item, rows, size))

    def stop(self) -> None:
        """Write what waits, then stop (without waiting: see :meth:`join`)."""
        self._closing.set()

    def join(self, deadline: float) -> None:
        self._thread.join(max(0.0, deadline - time.monotonic()))
        if self._thread.is_alive():
            log.warning("the %s log did not finish writing before the drain time ran out", self.url)

    def _run(self) -> None:
        """Every POLL_SECONDS: take what waits and convert it to Arrow at once (a few ms of the
        interpreter at a time, never a whole shard's worth), then write the shard when it is
        full or old enough."""
        parts: list[pa.Table] = []
        rows, held, since = 0, 0, time.monotonic()
        while True:
            closing = self._closing.wait(POLL_SECONDS)
            items, count, size = [], 0, 0
            while self.waiting:
                item, n, nbytes = self.waiting.popleft()
                items.append(item)
                count += n
                size += nbytes
            self.waiting_bytes -= size
            if items:
                if not parts:
                    since = time.monotonic()
                for table in self.build(items):  # one table per schema: a stray type spoils nothing else
                    parts.append(table)
                rows += count
                held += size
                del items
            if closing:
                self._write(parts, rows)
                return
            full = rows >= self.shard_rows or held >= SHARD_BYTES
            if parts and (full or time.monotonic() - since >= self.shard_seconds):
                self._write(parts, rows)
                parts, rows, held = [], 0, 0

    def _dropped(self, rows: int, why: str) -> None:
        self.on_drop(rows)
        now = time.monotonic()
        if now - self._warned > 60:  # one line a minute while the sink is down
            self._warned = now
            log.warning("dropped %d logged row(s): %s %s", rows, why, self.url)

    def _write(self, parts: list[pa.Table], rows: int) -> None:
        """One shard per schema among ``parts`` (requests typed alike go together)."""
        import pyarrow as pa

        buckets: list[list[pa.Table]] = []
        for table in parts:
            for bucket in buckets:
                if bucket[0].schema.equals(table.schema):
                    bucket.append(table)
                    break
            else:
                buckets.append([table])
        for bucket in buckets:
            count = sum(t.num_rows for t in bucket)
            try:
                self._put_shard(bucket[0] if len(bucket) == 1 else pa.concat_tables(bucket))
                if self.on_write is not None:
                    self.on_write(count)
            except Exception as exc:  # noqa: BLE001 - the log never takes serving down
                self._dropped(count, f"cannot write: {exc};")

    def _put_shard(self, table: pa.Table) -> None:
        from kappa_batch.shards import put_table

        self._seq += 1
        stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
        put_table(
            table,
            self.fs,
            f"{self.root.rstrip('/')}/part-{stamp}-{self._tag}-{self._seq:06d}.{self.fmt}",
            self.fmt,
        )


def predictions_table(items: list[Prediction]) -> list[pa.Table]:
    """Tables of every input row of ``items``: input columns, the META columns, outputs; one
    per run of requests with the same input and output schemas (converted together: one
    concat per column, not one table per request)."""
    groups: list[list[Prediction]] = []  # consecutive requests of one schema (hashing schemas is slow)
    for p in items:
        if groups and _same_schemas(groups[-1][0], p):
            groups[-1].append(p)
        else:
            groups.append([p])
    return [_group_table(group) for group in groups]


def _same_schemas(a: Prediction, b: Prediction) -> bool:
    def same(x: Any, y: Any) -> bool:
        return x is None and y is None or (x is not None and y is not None and x.schema.equals(y.schema))

    return same(a.inputs, b.inputs) and same(a.outputs, b.outputs)


def _group_table(group: list[Prediction]) -> pa.Table:
    import pyarrow as pa

    counts = [p.inputs.num_rows if p.inputs is not None else 1 for p in group]
    meta: dict[str, Any] = {key: [] for key in META}
    for p, n in zip(group, counts, strict=True):
        meta["_request_id"] += [p.request_id] * n
        meta["_row"] += range(n)
        meta["_time"] += [p.time] * n
        meta["_version"] += [p.version] * n
        meta["_api"] += [p.api] * n
        meta["_status"] += [p.status] * n
        meta["_latency_ms"] += [p.latency_ms] * n
    types = (pa.string(), pa.int32(), pa.float64(), pa.string(), pa.string(), pa.int16(), pa.float32())
    columns: dict[str, Any] = {}
    first = group[0]
    if first.inputs is not None:
        inputs = pa.Table.from_batches([p.inputs for p in group if p.inputs is not None]).combine_chunks()
        columns.update({name: inputs.column(name) for name in inputs.column_names if name not in META})
    columns.update({key: pa.array(meta[key], kind) for key, kind in zip(META, types, strict=True)})
    if first.outputs is not None:
        outputs = pa.concat_tables([p.outputs for p in group if p.outputs is not None]).combine_chunks()
        names = outputs.column_names
        for name in names:
            columns["_output" if len(names) == 1 else f"_output_{name}"] = outputs.column(name)
    return pa.table(columns)


def feedback_table(items: list[dict[str, Any]]) -> list[pa.Table]:
    import pyarrow as pa

    return [
        pa.table(
            {
                "_request_id": pa.array([str(i["request_id"]) for i in items], pa.string()),
                "_time": pa.array([i["_time"] for i in items], pa.float64()),
                "_feedback": pa.array([json.dumps(i, default=str) for i in items], pa.string()),
            }
        )
    ]


class PayloadLog:
    """The prediction and feedback logs of one server process."""

    def __init__(
        self, url: str, sample: float, fmt: str, metrics: Any, seconds: float = SHARD_SECONDS
    ) -> None:
        import random

        self.sample = sample
        self._random = random.random

        def writer(kind: str, build: Any) -> ShardWriter:
            dropped, written = metrics.log_dropped.labels(kind), metrics.log_written.labels(kind)
            return ShardWriter(url, kind, fmt, build, dropped.inc, written.inc, shard_seconds=seconds)

        self.predictions = writer("predictions", predictions_table)
        self.feedback = writer("feedback", feedback_table)

    def record(self, prediction: Prediction) -> None:
        if self.sample < 1.0 and self._random() >= self.sample:
            return
        inputs, outputs = prediction.inputs, prediction.outputs
        rows = inputs.num_rows if inputs is not None else 1
        size = (inputs.nbytes if inputs is not None else 0) + (outputs.nbytes if outputs is not None else 0)
        self.predictions.put(prediction, rows, size)

    def record_feedback(self, item: dict[str, Any], size: int) -> None:
        self.feedback.put({**item, "_time": time.time()}, 1, size)

    def close(self, timeout: float) -> None:
        """Write what waits in both logs, together, within ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        self.predictions.stop()
        self.feedback.stop()
        self.predictions.join(deadline)
        self.feedback.join(deadline)
