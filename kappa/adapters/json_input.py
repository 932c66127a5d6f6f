"""``JsonInput``: one string column of raw JSON, parsed objects for the function."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from kappa.adapters._json import dumps
from kappa.adapters.base import InputAdapter, decode_rows
from kappa.errors import InputError
from kappa.types import InferenceTask

if TYPE_CHECKING:
    import pyarrow as pa

COLUMN = "json"


def _parse(text: str | bytes) -> Any:
    try:
        return json.loads(text)
    except ValueError as exc:
        raise InputError(f"invalid JSON ({exc})") from None


class JsonInput(InputAdapter):
    """JSON input: a batch function gets a list of parsed objects, a single one one object.

    The Arrow form is one string column ``json``. A batch with other columns
    (a Parquet file of features, say) is read as one record (dict) per row.
    """

    def arrow_schema(self) -> pa.Schema:
        import pyarrow as pa

        return pa.schema([pa.field(COLUMN, pa.string())])

    def to_arrow(self, payload: Any) -> pa.RecordBatch:
        import pyarrow as pa

        if isinstance(payload, (str, bytes)):
            try:
                payload = json.loads(payload)
            except ValueError as exc:
                raise InputError(f"JsonInput: the payload is not valid JSON ({exc})") from None
        if not isinstance(payload, (list, tuple)):
            raise InputError(
                f"JsonInput with batch=True takes a list of JSON values, got {type(payload).__name__}"
            )
        try:
            texts = [dumps(item) for item in payload]
        except TypeError as exc:
            raise InputError(f"JsonInput: an item is not JSON serializable ({exc})") from None
        return pa.RecordBatch.from_arrays([pa.array(texts, pa.string())], names=[COLUMN])

    def from_arrow(self, batch: pa.RecordBatch, tasks: Sequence[InferenceTask[Any]]) -> list[Any]:
        import pyarrow as pa

        if batch.num_columns == 1 and (
            pa.types.is_string(batch.schema.types[0])
            or pa.types.is_large_string(batch.schema.types[0])
            or pa.types.is_binary(batch.schema.types[0])
        ):
            return decode_rows(tasks, batch.column(0).to_pylist(), _parse, "JSON")
        records: list[Any] = batch.to_pylist()
        return records

    def from_request_json(self, payload: Any) -> pa.RecordBatch:
        """One request is one JSON value (one row)."""
        return self.from_json([payload])

    def coerce(self, payload: Any) -> list[Any]:
        if not isinstance(payload, (list, tuple)):
            raise InputError(
                f"JsonInput with batch=True takes a list of JSON values, got {type(payload).__name__}"
            )
        return list(payload)
