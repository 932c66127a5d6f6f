"""Find the rows that make a batch function raise, scoring every other row once.

A batch that raised is searched from its first row on. The search holds a range that raised
(at first the whole batch) and scores its first part:

* when that part raises, the range shrinks to it, and the rest of the range waits;
* when it does not, its rows are done, and the range is what is left of it, which must hold
  the row that raised (it is not called again to show it).

A range of one row is the row that raised, with its own exception (a row only inferred to
raise is called alone to get it, and kept if it does not raise after all). The rows after it
are then scored in parts, and the search goes on in the first part that raises.

Good rows are never scored twice, except in parts that raised. Calls that raise are usually
cheap (a function checks its input first) and a call that returns costs the function's fixed
overhead, so parts are cut to raise with a chance of :data:`FIRST_PART`: the search descends
mostly through calls that raise. The chance comes from the share of raising rows, estimated
from the rows seen before and the rows searched so far. Finding one bad row among ``n`` takes
about ``log2(n) / H(FIRST_PART)`` calls (0.81 bit a call), of which a share
``1 - FIRST_PART`` return.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from typing import TypeVar

from kappa.errors import InputError

T = TypeVar("T")

FIRST_PART = 0.75  # the chance that a part raises, and the share of a raising range scored first
PRIOR = 4  # earlier batches count as this many raising rows at most


def isolate(
    score: Callable[[int, int], T], size: int, raised: Exception, seen: tuple[int, int] = (0, 0)
) -> Iterator[tuple[int, int, T | Exception]]:
    """``(start, stop, result)`` for consecutive ranges covering rows ``[0, size)``, in order.

    ``score(start, stop)`` scores rows ``[start, stop)`` or raises; ``raised`` is what scoring all
    ``size`` rows raised. A result is what ``score`` returned, or the exception a lone row
    raised. :class:`~kappa.errors.InputError` (the data does not fit the API) is not a row's
    fault: it propagates. ``seen``: rows that raised alone and rows scored, in earlier batches.
    """
    seen_raised, seen_rows = _weighed(*seen)
    found = 0
    low, high = 0, size
    error: Exception | None = raised  # what [low, high) raised; None: inferred, not called
    known = True  # False: nothing is known of [low, size)
    while low < size:
        # the share of raising rows: at least one in the batch, which raised; or as many as seen
        raising, rows = seen_raised + found, seen_rows + low
        reach = _reach(max((raising + 1) / (rows + size), (raising - 1) / (rows + 1)))
        if not known:
            cut = low + min(size - low, reach)
            part = _attempt(score, low, cut)
            if isinstance(part, Exception):
                high, error, known = cut, part, True
            else:
                yield low, cut, part
                low = cut
            continue
        if high - low == 1:
            alone = error if error is not None else _attempt(score, low, high)
            found += isinstance(alone, Exception)
            yield low, high, alone
            low, known = high, False
            continue
        cut = low + max(1, min(int((high - low) * FIRST_PART), reach))
        part = _attempt(score, low, cut)
        if isinstance(part, Exception):
            high, error = cut, part
        else:
            yield low, cut, part
            low, error = cut, None


def _weighed(raised: int, rows: int) -> tuple[float, float]:
    """Earlier batches' raising rows and rows, weighed as at most :data:`PRIOR` raising rows, so
    that the rows of this batch soon outweigh them."""
    if raised <= PRIOR:
        return raised, rows
    return PRIOR, rows * PRIOR / raised


def _reach(density: float) -> int:
    """Rows from a row on that hold a raising row with a chance of :data:`FIRST_PART`."""
    if density >= 1:
        return 1
    return max(1, math.ceil(math.log1p(-FIRST_PART) / math.log1p(-density)))


def _attempt(score: Callable[[int, int], T], start: int, stop: int) -> T | Exception:
    try:
        return score(start, stop)
    except InputError:
        raise
    except Exception as exc:
        return exc
