"""The search for the rows that make a batch raise (kappa_batch.isolate): every row is scored
once or stands alone with its own error, and the search costs few calls."""

from __future__ import annotations

import math
import random

import pytest

from kappa.errors import InputError
from kappa_batch.isolate import isolate


class Model:
    """Raises on any range holding a bad row (``bad``), or on the rows ``pair`` together."""

    def __init__(self, bad: set[int], pair: tuple[int, int] | None = None) -> None:
        self.bad, self.pair, self.calls = bad, pair, 0

    def __call__(self, start: int, stop: int) -> list[int]:
        self.calls += 1
        hit = sorted(r for r in self.bad if start <= r < stop)
        if hit:
            raise ValueError(f"row {hit[0]}")
        if self.pair and all(start <= r < stop for r in self.pair):
            raise ValueError("the pair")
        return list(range(start, stop))


def run(model: Model, size: int, seen: tuple[int, int] = (0, 0)) -> tuple[list[int], dict[int, str]]:
    try:
        model(0, size)
    except ValueError as exc:
        raised = exc
    scored: list[int] = []
    errors: dict[int, str] = {}
    position = 0
    for start, stop, result in isolate(model, size, raised, seen):
        assert start == position and stop > start  # consecutive ranges, in order
        position = stop
        if isinstance(result, Exception):
            assert stop == start + 1
            errors[start] = str(result)
        else:
            assert result == list(range(start, stop))
            scored.extend(result)
    assert position == size
    return scored, errors


@pytest.mark.parametrize(
    ("size", "bad_count", "seen"),
    [(1, 1, (0, 0)), (2, 1, (0, 0)), (7, 7, (0, 0)), (1000, 1, (0, 0)), (65536, 7, (0, 0))]
    + [(65536, 7, (70, 655_360)), (4096, 400, (400, 4096)), (4096, 400, (0, 0))],
)
def test_each_bad_row_stands_alone_with_its_error_and_other_rows_are_scored_once(size, bad_count, seen):
    rng = random.Random(size * 31 + bad_count)
    bad = set(rng.sample(range(size), bad_count))
    model = Model(bad)
    scored, errors = run(model, size, seen)
    assert errors == {row: f"row {row}" for row in bad}
    assert scored == [row for row in range(size) if row not in bad]
    # log2(size / bad rows) bits per bad row; a call that raises with a chance of 3/4 learns 0.81 bit
    per_row = math.log2(size / bad_count) / 0.8 + 4
    assert model.calls <= 1 + bad_count * per_row


@pytest.mark.parametrize("seen", [(0, 0), (1, 1), (1000, 1000), (1, 10**9)])
def test_what_was_seen_before_costs_calls_but_never_one_call_per_row(seen):
    """Earlier batches (one bad row alone, all rows bad, hardly any) only guide the search."""
    bad = {5, 700}
    model = Model(bad)
    scored, errors = run(model, 1000, seen)
    assert sorted(errors) == sorted(bad) and len(scored) == 998
    assert model.calls <= 60  # halving took about 2 x 2 x log2(1000) = 40


def test_rows_that_raise_only_together_are_both_scored():
    """A row is an error only when it raises alone; rows that raise only together are kept."""
    scored, errors = run(Model(set(), pair=(3, 700)), 1000)
    assert errors == {} and scored == list(range(1000))


def test_input_error_is_not_a_rows_fault():
    def score(start: int, stop: int) -> None:
        raise InputError("missing column")

    with pytest.raises(InputError):
        list(isolate(score, 10, ValueError("first")))
