"""The micro-batching dispatcher: order, caps, no idle waiting, shedding, isolation, the cost model."""

from __future__ import annotations

import asyncio
import time

import pyarrow as pa
import pytest

from kappa.errors import InputError
from kappa_batch.runner import NO_ERRORS, RunResult
from kappa_batch.scoring import ROW_ID, ScoredBatch
from kappa_online.dispatcher import CostModel, Dispatcher, Overloaded


def request(*values: int) -> pa.RecordBatch:
    return pa.RecordBatch.from_pydict({"x": list(values)})


class Model:
    """Doubles ``x``; remembers every batch it scored; takes ``seconds`` per batch."""

    def __init__(self, seconds: float = 0.0, per_row: float = 0.0) -> None:
        self.seconds, self.per_row = seconds, per_row
        self.batches: list[list[int]] = []

    def __call__(self, table: pa.Table | pa.RecordBatch, headers: object = None) -> ScoredBatch:
        values = table.column("x").to_pylist()
        if -1 in values:
            raise InputError("x must not be -1")
        time.sleep(self.seconds + self.per_row * len(values))
        self.batches.append(values)
        return ScoredBatch(ROW_ID, RunResult(pa.table({"y": [2 * v for v in values]}), NO_ERRORS))


def run(coroutine):  # type: ignore[no-untyped-def]
    return asyncio.run(coroutine)


def test_a_lone_request_is_not_held_back():
    async def scenario() -> float:
        dispatcher = Dispatcher(Model(), max_batch_rows=100, max_latency_ms=300)
        dispatcher.start()
        for _ in range(5):  # the cost model has seen batches
            await dispatcher.submit(request(1))
        start = time.perf_counter()
        scored = await dispatcher.submit(request(21))
        took = time.perf_counter() - start
        await dispatcher.close()
        assert scored.rows.result.outputs.column("y").to_pylist() == [42]
        return took

    assert run(scenario()) < 0.05  # far below the 300 ms budget it could have waited


def test_requests_are_served_in_arrival_order_and_batched_up_to_the_row_cap():
    model = Model(seconds=0.02)

    async def scenario() -> list[list[int]]:
        dispatcher = Dispatcher(model, max_batch_rows=7, max_latency_ms=5000)
        dispatcher.start()
        tasks = []
        for i in range(12):
            tasks.append(asyncio.ensure_future(dispatcher.submit(request(3 * i, 3 * i + 1, 3 * i + 2))))
            await asyncio.sleep(0)  # arrivals in this order
        results = await asyncio.gather(*tasks)
        await dispatcher.close()
        for i, scored in enumerate(results):  # each request gets exactly its own rows back
            assert scored.rows.result.outputs.column("y").to_pylist() == [6 * i, 6 * i + 2, 6 * i + 4]
        return model.batches

    batches = run(scenario())
    assert [v for batch in batches for v in batch] == list(range(36))  # arrival order
    assert max(len(b) for b in batches) <= 7 and max(len(b) for b in batches) == 6  # two requests fit
    assert len(batches) < 12  # requests were grouped


def test_disabled_microbatching_scores_one_request_per_batch():
    model = Model(seconds=0.005)

    async def scenario() -> None:
        dispatcher = Dispatcher(model, enabled=False)
        dispatcher.start()
        await asyncio.gather(*(dispatcher.submit(request(i)) for i in range(10)))
        await dispatcher.close()

    run(scenario())
    assert sorted(model.batches) == [[i] for i in range(10)]


def test_overload_is_refused_with_a_retry_after_and_no_one_waits_past_the_budget():
    model = Model(seconds=0.03)

    async def scenario() -> tuple[int, int, float]:
        dispatcher = Dispatcher(model, max_batch_rows=2, max_latency_ms=150)
        dispatcher.start()
        for _ in range(4):
            await dispatcher.submit(request(1))

        async def timed(i: int) -> tuple[bool, float]:
            start = time.perf_counter()
            try:
                await dispatcher.submit(request(i))
                return True, time.perf_counter() - start
            except Overloaded as exc:
                assert exc.retry_after >= 1
                return False, time.perf_counter() - start

        outcomes = await asyncio.gather(*(timed(i) for i in range(60)))
        await dispatcher.close()
        served = [t for ok, t in outcomes if ok]
        return len(served), len(outcomes) - len(served), max(served)

    served, refused, slowest = run(scenario())
    assert served > 0 and refused > 0
    assert slowest < 0.15 + 0.1  # the budget, plus one batch of slack for the estimate


def test_a_batch_refused_as_input_is_retried_request_by_request():
    model = Model()

    async def scenario() -> list[object]:
        dispatcher = Dispatcher(model, max_batch_rows=100, max_latency_ms=1000)
        dispatcher.start()
        outcomes = await asyncio.gather(
            *(dispatcher.submit(request(v)) for v in (1, 2, -1, 4)), return_exceptions=True
        )
        await dispatcher.close()
        return outcomes

    outcomes = run(scenario())
    assert isinstance(outcomes[2], InputError)
    assert [o.rows.result.outputs.column("y").to_pylist() for i, o in enumerate(outcomes) if i != 2] == [
        [2],
        [4],
        [8],
    ]


def test_close_serves_what_is_queued():
    model = Model(seconds=0.01)

    async def scenario() -> list[object]:
        dispatcher = Dispatcher(model, max_batch_rows=1, max_latency_ms=10_000)
        dispatcher.start()
        pending = [asyncio.ensure_future(dispatcher.submit(request(i))) for i in range(5)]
        await asyncio.sleep(0)
        await dispatcher.close()
        with pytest.raises(Overloaded, match="shutting down"):
            await dispatcher.submit(request(9))
        return [p.result().rows.result.outputs.column("y").to_pylist() for p in pending]

    assert run(scenario()) == [[0], [2], [4], [6], [8]]


def test_cost_model_learns_overhead_and_per_row_cost():
    model = CostModel()
    for rows in (1, 10, 100, 50, 5, 200):
        model.observe(rows, 0.002 + 0.0001 * rows)
    assert model.overhead == pytest.approx(0.002, rel=1e-6)
    assert model.per_row == pytest.approx(0.0001, rel=1e-6)
    assert model.predict(1000) == pytest.approx(0.102, rel=1e-6)
    single = CostModel()
    single.observe(4, 0.004)
    assert single.predict(4) == pytest.approx(0.004)


def test_an_idle_server_serves_a_large_request_after_one_row_traffic():
    """Fitted on one-row batches only, the model charges a whole batch per row; that estimate alone
    (200 rows x 40 ms = 8 s against a 300 ms budget) must never refuse a request to an idle server."""
    model = Model(seconds=0.04)

    async def scenario() -> list[int]:
        dispatcher = Dispatcher(model, max_batch_rows=1000, max_latency_ms=300)
        dispatcher.start()
        for _ in range(10):
            await dispatcher.submit(request(1))
        assert dispatcher.model.predict(200) > 1.0  # the estimate would refuse it
        served = []
        for _ in range(3):  # and keeps serving: a refused request would never have taught it otherwise
            scored = await dispatcher.submit(request(*range(200)))
            served.append(scored.rows.rows_in)
        await dispatcher.close()
        return served

    assert run(scenario()) == [200, 200, 200]


def test_the_cost_model_forgets_with_time():
    model = CostModel(half_life=0.05)
    for _ in range(20):
        model.observe(1, 1.0)
    time.sleep(0.3)  # six half-lives
    model.observe(100, 0.1)
    assert model.predict(100) < 0.5  # the recent, cheap batch outweighs the old, slow ones


def test_a_batch_running_past_the_budget_refuses_new_requests_at_once():
    model = Model(seconds=0.6)

    async def scenario() -> float:
        dispatcher = Dispatcher(model, max_batch_rows=10, max_latency_ms=200)
        dispatcher.start()
        running = asyncio.ensure_future(dispatcher.submit(request(1)))
        await asyncio.sleep(0.35)  # the batch in flight has run longer than the budget
        start = time.perf_counter()
        with pytest.raises(Overloaded, match="over capacity"):
            await dispatcher.submit(request(2))
        refused_after = time.perf_counter() - start
        await running
        await dispatcher.close()
        return refused_after

    assert run(scenario()) < 0.1  # refused on the spot, not after waiting out the batch


def test_a_wait_of_one_batch_slower_than_the_budget_is_not_overload():
    """A busy machine runs a batch longer than a small budget: waiting for it is what one batch
    costs, not a queue, so clients that arrive during batches are served, not refused."""
    model = Model(seconds=0.08)  # every batch takes longer than the 50 ms budget

    async def scenario() -> tuple[float, list[BaseException]]:
        dispatcher = Dispatcher(model, max_batch_rows=100, max_latency_ms=50)
        dispatcher.start()
        await dispatcher.submit(request(0))  # one measured batch

        async def client(i: int) -> None:
            await asyncio.sleep(i * 0.01)  # arrive while batches run
            for _ in range(4):
                await dispatcher.submit(request(i))

        outcomes = await asyncio.gather(*(client(i) for i in range(1, 9)), return_exceptions=True)
        bound = dispatcher.bound()
        await dispatcher.close()
        return bound, [o for o in outcomes if isinstance(o, BaseException)]

    bound, failures = run(scenario())
    assert failures == []
    assert 0.1 < bound <= 0.15 + 1e-9  # two measured batches, at most three budgets
    assert max(len(b) for b in model.batches) > 1  # they waited for a batch together
