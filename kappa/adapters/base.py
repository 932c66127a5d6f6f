"""The adapter protocol: how a ``pyarrow.RecordBatch`` becomes a function's input
and how the function's return value becomes Arrow again.

Every engine hands an API a ``RecordBatch``; only adapters know what the user
function takes. Adapters import pyarrow/pandas inside their methods, so that
declaring a service stays cheap.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from kappa.errors import InputError
from kappa.types import InferenceTask

if TYPE_CHECKING:
    import pyarrow as pa


class InputAdapter(ABC):
    """Turns Arrow batches (and in-process Python payloads) into a function's input."""

    batch_supported: ClassVar[bool] = True
    single_supported: ClassVar[bool] = True

    def config(self) -> dict[str, Any]:
        """The adapter's settings, as recorded in the bundle manifest."""
        return {}

    def arrow_schema(self) -> pa.Schema | None:
        """The Arrow schema this adapter accepts, or ``None`` when it cannot know."""
        return None

    @abstractmethod
    def to_arrow(self, payload: Any) -> pa.RecordBatch:
        """Encode a Python payload holding a whole batch as a ``RecordBatch``."""

    @abstractmethod
    def from_arrow(self, batch: pa.RecordBatch, tasks: Sequence[InferenceTask[Any]]) -> Any:
        """Decode ``batch`` into the function's batch input.

        Rows that cannot be decoded are discarded through their task and left
        out of the returned value. A problem with the whole batch (a missing
        column) raises :class:`kappa.errors.InputError`.
        """

    def coerce(self, payload: Any) -> Any:
        """Turn an in-process payload (``svc.predict(payload)``) into the batch input."""
        batch = self.to_arrow(payload)
        tasks = [InferenceTask[Any](row=i) for i in range(batch.num_rows)]
        return self.from_arrow(batch, tasks)

    def split(self, value: Any) -> list[Any]:
        """Split a batch input into the items that a ``batch=False`` function takes."""
        return list(value)

    def describe(self) -> str:
        return type(self).__name__


class OutputAdapter(ABC):
    """Turns a function's return value into a ``RecordBatch`` of one row per result."""

    def __init__(self, column: str = "prediction") -> None:
        self.column = column

    def config(self) -> dict[str, Any]:
        return {"column": self.column}

    def arrow_schema(self) -> pa.Schema | None:
        """The output schema when known before running the function."""
        return None

    @abstractmethod
    def to_arrow(self, results: Any) -> pa.RecordBatch:
        """Encode the results of one batch (already checked for length)."""

    def to_json_rows(self, outputs: pa.Table) -> list[Any]:
        """One JSON value per row, as ``kappa run --input`` prints and the HTTP API answers:
        the value itself when there is one output column, a record when there are several.
        Columns of JSON text (field metadata ``kappa.encoding: json``) give back their values."""
        columns = [
            _json_values(outputs.column(i), outputs.schema.field(i)) for i in range(outputs.num_columns)
        ]
        if len(columns) == 1:
            return columns[0]
        names = outputs.column_names
        return [dict(zip(names, row, strict=True)) for row in zip(*columns, strict=True)]

    def describe(self) -> str:
        return type(self).__name__


def _json_values(column: Any, field: Any) -> list[Any]:
    values: list[Any] = column.to_pylist()
    if (field.metadata or {}).get(b"kappa.encoding") == b"json":
        import json

        return [json.loads(v) if v is not None else None for v in values]
    return values


def decode_rows(
    tasks: Sequence[InferenceTask[Any]], raw: Sequence[Any], decode: Callable[[Any], Any], what: str
) -> list[Any]:
    """Decode each row; a row that is null or fails to decode is discarded (400), never the batch."""
    values: list[Any] = []
    for task, item in zip(tasks, raw, strict=True):
        if item is None:
            task.discard(400, f"row {task.row}: empty {what} input")
            continue
        try:
            values.append(decode(item))
        except (InputError, ValueError) as exc:
            task.discard(400, f"row {task.row}: {exc}")
    return values


def result_length(value: Any) -> int | None:
    """The number of results in ``value``, or ``None`` if it is not a sequence."""
    if isinstance(value, (str, bytes, dict)):
        return None
    shape = getattr(value, "shape", None)
    if shape is not None:
        return int(shape[0]) if len(shape) > 0 else None
    try:
        return len(value)
    except TypeError:
        return None


def positional_names(count: int) -> list[str]:
    """Column names used for data that came without any: ``"0"``, ``"1"``, ..."""
    return [str(i) for i in range(count)]
