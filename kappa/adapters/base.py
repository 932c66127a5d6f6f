"""The adapter protocol: how a ``pyarrow.RecordBatch`` becomes a function's input
and how the function's return value becomes Arrow again.

Every engine hands an API a ``RecordBatch``; only adapters know what the user
function takes. Adapters import pyarrow/pandas inside their methods, so that
declaring a service stays cheap.
"""

from __future__ import annotations

import functools
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from kappa.errors import InputError, UnsupportedMediaType
from kappa.types import InferenceTask

if TYPE_CHECKING:
    import pyarrow as pa


class InputAdapter(ABC):
    """Turns Arrow batches (and in-process Python payloads) into a function's input, and owns its
    wire formats: JSON (``kappa run --input`` and HTTP bodies alike), the media types it reads
    over HTTP, and the OpenAPI description of a request."""

    batch_supported: ClassVar[bool] = True
    single_supported: ClassVar[bool] = True
    media_types: ClassVar[tuple[str, ...]] = ("application/json",)

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

    # -- wire formats ----------------------------------------------------------
    def from_json(self, payload: Any) -> pa.RecordBatch:
        """A parsed JSON value holding a batch of rows, as Arrow (``kappa run --input``; an HTTP body).
        Whatever cannot be read is an :class:`~kappa.errors.InputError`, never a traceback."""
        import pyarrow as pa

        try:
            batch = self.to_arrow(payload)
        except InputError:
            raise
        except (ValueError, TypeError, KeyError, IndexError, OverflowError, pa.ArrowException) as exc:
            raise InputError(f"{self.describe()} cannot read this payload: {exc}") from None
        except RecursionError:
            raise InputError(f"{self.describe()} cannot read this payload: it is nested too deeply") from None
        if batch.num_rows == 0:
            raise InputError("the input holds no rows; send a list of rows or records")
        return batch

    def from_http(self, body: bytes, media_type: str, files: list[bytes] | None = None) -> pa.RecordBatch:
        """One HTTP request (its body, or the files of a multipart form) as Arrow, fitted to the
        declared columns. A media type the adapter does not read is :class:`UnsupportedMediaType`."""
        from kappa.adapters._json import is_json, parse_body

        if files is not None or not is_json(media_type):
            raise UnsupportedMediaType(
                f"content type {media_type!r} is not accepted here; send {' or '.join(self.media_types)}"
            )
        return self.conform(self.from_request_json(parse_body(body)))

    def from_request_json(self, payload: Any) -> pa.RecordBatch:
        """One HTTP request's JSON: a batch of rows, like ``kappa run --input`` (JsonInput: one row)."""
        return self.from_json(payload)

    def conform(self, batch: pa.RecordBatch) -> pa.RecordBatch:
        """``batch`` with the columns (order and types) the adapter declares; an
        :class:`~kappa.errors.InputError` naming the column otherwise."""
        expected = self.declared_schema
        if expected is None or batch.schema.equals(expected):
            return batch
        from kappa.adapters.schema import fit

        return fit(batch, expected, strict=True)

    @functools.cached_property
    def declared_schema(self) -> pa.Schema | None:
        """:meth:`arrow_schema`, worked out once (it is read for every request)."""
        return self.arrow_schema()

    def openapi_request(self) -> dict[str, Any]:
        """The OpenAPI ``requestBody.content`` of an API with this input."""
        return {"application/json": {"schema": {}}}

    def coerce(self, payload: Any) -> Any:
        """Turn an in-process payload (``svc.predict(payload)``) into the batch input."""
        batch = self.to_arrow(payload)
        tasks = [InferenceTask[Any](row=i) for i in range(batch.num_rows)]
        return self.from_arrow(batch, tasks)

    def split(self, value: Any) -> list[Any]:
        """Split a batch input into the items that a ``batch=False`` function takes."""
        return list(value)

    def slicer(self, value: Any) -> Callable[[int, int], Any] | None:
        """A function giving rows ``[start, stop)`` of ``value``, a decoded batch input, as the
        value :meth:`from_arrow` gives for that slice of the batch, which the function may change
        without changing ``value``; ``None`` when the adapter cannot (each slice is then decoded
        from Arrow).

        The runner uses it to score parts of a batch that raised without decoding each part. A
        part keeps the types of the whole batch (an integer column with nulls in the batch stays
        float in a part without them). Values whose cells are mutable objects must not be sliced
        (return ``None``): a part would share them with ``value``."""
        return None

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
