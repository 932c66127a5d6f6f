"""One API call on one Arrow batch: decode, call the user function, encode.

This is the single place where a ``RecordBatch`` meets a user function. The
engines in ``kappa_batch`` (local, Spark, Dask) and ``kappa_online`` build on
:func:`infer`; it isolates nothing itself beyond ``batch=False`` items (a raise
in a batch function propagates, and ``kappa_batch`` searches the batch for the rows that raise).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from kappa.adapters.base import result_length
from kappa.errors import InferenceError
from kappa.types import InferenceError as ErrorResult
from kappa.types import InferenceResult, InferenceTask

if TYPE_CHECKING:
    import pyarrow as pa

    from kappa.service import InferenceAPI


ErrorKind = Literal["discarded", "rejected", "raised", "invalid_output", "unreadable"]
"""Why a row got no prediction, as data (never parsed from its message):

* ``discarded``: the API refused it on purpose (``task.discard``, an ``InferenceError``
  result, or an input adapter that could not decode it); its status is the API's.
* ``rejected``: the function raised ``ValueError``/``TypeError`` on it: the input's fault.
* ``raised``: the function raised anything else: the server's fault.
* ``invalid_output``: the function returned the wrong number of results for its batch.
* ``unreadable``: a value of the input file could not be read as its column's type.
"""
ERROR_KINDS: tuple[ErrorKind, ...] = ("discarded", "rejected", "raised", "invalid_output", "unreadable")


def raised_kind(exc: BaseException) -> ErrorKind:
    """The kind of a row whose function raised ``exc``."""
    return "rejected" if isinstance(exc, (ValueError, TypeError)) else "raised"


@dataclass(frozen=True)
class RowError:
    """A row that got no prediction: its position in the batch, a status, why, and its kind."""

    row: int
    status: int
    message: str
    kind: ErrorKind = "discarded"


Response = tuple[int, Mapping[str, str]]  # an HTTP status and headers a result asked for
Headers = Mapping[str, str] | Sequence[Mapping[str, str]] | None  # for the batch, or per row


@dataclass(frozen=True)
class BatchOutcome:
    """Outputs aligned to the input rows (null where a row failed), the failed rows, and the
    rows whose result was an :class:`~kappa.types.InferenceResult` asking for a status or headers."""

    outputs: pa.RecordBatch
    errors: list[RowError]
    responses: Mapping[int, Response] = field(default_factory=dict)


class TaskBatch(Sequence[InferenceTask[Any]]):
    """The tasks of a batch, created only when something looks at them.

    Most adapters and functions never touch tasks; building one object per
    row would cost more than scoring a LogisticRegression.
    """

    def __init__(self, size: int, headers: Headers = None) -> None:
        self._size = size
        self._headers = headers if headers is not None else {}
        self._tasks: dict[int, InferenceTask[Any]] = {}

    def __len__(self) -> int:
        return self._size

    def __getitem__(self, index: Any) -> Any:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(self._size))]
        if index < 0:
            index += self._size
        if not 0 <= index < self._size:
            raise IndexError(index)
        task = self._tasks.get(index)
        if task is None:
            headers = self._headers if isinstance(self._headers, Mapping) else self._headers[index]
            task = self._tasks[index] = InferenceTask(row=index, http_headers=headers)
        return task

    def __iter__(self) -> Iterator[InferenceTask[Any]]:
        return (self[i] for i in range(self._size))

    def discarded(self) -> list[InferenceTask[Any]]:
        return sorted((t for t in self._tasks.values() if t.is_discarded), key=lambda t: t.row)

    def active(self) -> Sequence[InferenceTask[Any]]:
        """Tasks not discarded so far (this object itself when none were)."""
        if not any(t.is_discarded for t in self._tasks.values()):
            return self
        return [t for t in self if not t.is_discarded]


def _asks(result: InferenceResult[Any]) -> bool:
    return result.http_status != 200 or bool(result.http_headers)


def _unwrap_results(
    results: Any, kept: Sequence[InferenceTask[Any]], responses: dict[int, Response]
) -> tuple[Any, Sequence[InferenceTask[Any]]]:
    """Turn ``InferenceError`` items into discards and ``InferenceResult`` items into values
    (noting in ``responses`` the status and headers they ask for)."""
    if not isinstance(results, list) or not any(isinstance(r, InferenceResult) for r in results):
        return results, kept
    values: list[Any] = []
    still_kept: list[InferenceTask[Any]] = []
    for task, result in zip(kept, results, strict=True):
        if isinstance(result, ErrorResult):
            task.discard(result.http_status, result.err_msg)
            continue
        if isinstance(result, InferenceResult):
            if _asks(result):
                responses[task.row] = (result.http_status, dict(result.http_headers))
            values.append(result.data)
        else:
            values.append(result)
        still_kept.append(task)
    return values, still_kept


def check_length(api: InferenceAPI[Any, Any], results: Any, inputs: int, discarded: int) -> None:
    """Raise when a batch function returned the wrong number of results."""
    expected = inputs - discarded
    actual = result_length(results)
    if actual != expected:
        got = f"{actual} results" if actual is not None else f"a {type(results).__name__}"
        kept = f" ({discarded} of {inputs} inputs were discarded)" if discarded else ""
        raise InferenceError(
            f"API {api.service_name}.{api.name} returned {got} for {expected} inputs{kept}; "
            "a batch=True API must return one result per input it did not discard"
        )


def null_outputs(api: InferenceAPI[Any, Any], size: int) -> pa.RecordBatch:
    import pyarrow as pa

    schema = api.output_adapter.arrow_schema()
    if schema is not None:
        return pa.RecordBatch.from_arrays([pa.nulls(size, f.type) for f in schema], schema=schema)
    return pa.RecordBatch.from_arrays([pa.nulls(size)], names=[api.output_adapter.column])


def infer(api: InferenceAPI[Any, Any], batch: pa.RecordBatch, headers: Headers = None) -> BatchOutcome:
    """Score one batch with ``api``; see the module docstring. ``headers``: the request headers
    the tasks see (``task.http_headers``), one mapping for the batch or one per row."""
    tasks = TaskBatch(batch.num_rows, headers)
    return call(api, api.input_adapter.from_arrow(batch, tasks), tasks)


def call(api: InferenceAPI[Any, Any], value: Any, tasks: TaskBatch) -> BatchOutcome:
    """Call the function on ``value``, a decoded batch input whose rows are ``tasks``, and
    encode what it returned; :func:`infer` without the decoding."""
    import pyarrow as pa

    size = len(tasks)
    responses: dict[int, Response] = {}
    kinds: dict[int, ErrorKind] = {}  # rows of a batch=False API whose call raised
    active = tasks.active()
    if api.batch:
        results = api.call_batch(value, active)
        kept = [t for t in active if not t.is_discarded] if tasks.discarded() else active
        check_length(api, results, len(active), len(active) - len(kept))
        results, kept = _unwrap_results(results, kept, responses)
    else:
        results, kept = [], []
        for item, task in zip(api.input_adapter.split(value), active, strict=True):
            try:
                result = api.call_single(item, task)
            except Exception as exc:  # one item's failure must not fail its batch
                task.discard(500, f"{type(exc).__name__}: {exc}")
                kinds[task.row] = raised_kind(exc)
                continue
            if isinstance(result, ErrorResult):
                task.discard(result.http_status, result.err_msg)
            elif not task.is_discarded:
                if isinstance(result, InferenceResult) and _asks(result):
                    responses[task.row] = (result.http_status, dict(result.http_headers))
                results.append(result.data if isinstance(result, InferenceResult) else result)
                kept.append(task)
    if len(kept) == 0:
        outputs = null_outputs(api, size)
    else:
        outputs = api.output_adapter.to_arrow(results)
        if outputs.num_rows != len(kept):
            raise InferenceError(
                f"API {api.service_name}.{api.name}: {api.output_adapter.describe()} made "
                f"{outputs.num_rows} rows from {len(kept)} results"
            )
        if len(kept) != size:
            positions: list[int | None] = [None] * size
            for index, task in enumerate(kept):
                positions[task.row] = index
            outputs = outputs.take(pa.array(positions, type=pa.int64()))
    errors = [
        RowError(
            t.row,
            t.error.http_status if t.error else 400,
            t.error.err_msg if t.error else "",
            kinds.get(t.row, "discarded"),
        )
        for t in tasks.discarded()
    ]
    return BatchOutcome(outputs=outputs, errors=errors, responses=responses)
