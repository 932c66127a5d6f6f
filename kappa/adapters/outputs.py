"""Output adapters: a function's return value -> one ``RecordBatch`` row per result."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from kappa.adapters._json import dumps
from kappa.adapters.base import OutputAdapter
from kappa.adapters.schema import one_batch
from kappa.errors import InferenceError

if TYPE_CHECKING:
    import pyarrow as pa


def _is_frame(value: Any) -> bool:
    return type(value).__name__ == "DataFrame" and hasattr(value, "columns")


def _is_series(value: Any) -> bool:
    return type(value).__name__ == "Series" and hasattr(value, "to_numpy")


def _frame_to_arrow(frame: Any) -> pa.RecordBatch:
    """A returned DataFrame as Arrow; unlike inputs (:func:`kappa.adapters.dataframe.frame_to_arrow`)
    NaN becomes null, so every output writes and prints as valid JSON."""
    import pyarrow as pa

    frame = frame.set_axis([str(c) for c in frame.columns], axis=1)
    return pa.RecordBatch.from_pandas(frame, preserve_index=False)


JSON_ENCODING = {b"kappa.encoding": b"json"}  # field metadata: the strings hold JSON values


def _json_column(items: Any, column: str) -> pa.RecordBatch:
    """Results as JSON text, the column marked so that they print back as the values they were."""
    import pyarrow as pa

    try:
        texts = [dumps(item) for item in items]
    except TypeError as exc:
        raise InferenceError(f"a result is not JSON serializable ({exc})") from None
    field = pa.field(column, pa.string(), metadata=JSON_ENCODING)
    return pa.RecordBatch.from_arrays([pa.array(texts, pa.string())], schema=pa.schema([field]))


def _holds_objects(arrow_type: pa.DataType) -> bool:
    """A struct type, or a list or map holding one: results that were objects (dicts)."""
    import pyarrow as pa

    if pa.types.is_struct(arrow_type) or pa.types.is_map(arrow_type):
        return True
    if (
        pa.types.is_list(arrow_type)
        or pa.types.is_large_list(arrow_type)
        or pa.types.is_fixed_size_list(arrow_type)
    ):
        return _holds_objects(arrow_type.value_type)
    return False


def _array_column(array: Any) -> pa.Array:
    import pyarrow as pa

    if array.ndim == 1:
        return pa.array(array)
    flat = array.reshape(array.shape[0], -1)
    column = pa.FixedSizeListArray.from_arrays(pa.array(flat.ravel()), flat.shape[1])
    return column


class DefaultOutput(OutputAdapter):
    """Detects the result's kind.

    DataFrame -> its columns; Series, 1-D array or list of scalars -> one column
    named ``column``; 2-D array -> one column of fixed-size lists; objects (dicts)
    and anything else Arrow cannot type -> JSON text, whatever the other results of
    the batch look like (so an object comes back exactly as returned, no keys added).

    ``dtype`` (an Arrow type name such as ``"int64"``, ``"double"``, ``"string"``)
    declares the column's type, so engines know the output schema before scoring
    anything (a Dask ``meta``, a Spark return type); results are cast to it.
    """

    def __init__(self, column: str = "prediction", dtype: str | None = None) -> None:
        super().__init__(column)
        self.dtype = dtype

    def config(self) -> dict[str, Any]:
        return {**super().config(), "dtype": self.dtype}

    def arrow_schema(self) -> pa.Schema | None:
        if self.dtype is None:
            return None
        import pyarrow as pa

        try:
            kind = pa.type_for_alias(self.dtype)
        except ValueError:
            raise InferenceError(
                f"DefaultOutput(dtype={self.dtype!r}): not an Arrow type name; use e.g. 'int64', "
                "'double', 'string', 'bool'"
            ) from None
        return pa.schema([pa.field(self.column, kind)])

    def to_arrow(self, results: Any) -> pa.RecordBatch:
        batch = self._detect(results)
        schema = self.arrow_schema()
        if schema is None:
            return batch
        import pyarrow as pa

        try:
            return pa.RecordBatch.from_arrays([batch.column(0).cast(schema.field(0).type)], schema=schema)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
            raise InferenceError(
                f"the results ({batch.schema.field(0).type}) do not fit "
                f"DefaultOutput(dtype={self.dtype!r}): {exc}"
            ) from None

    def _detect(self, results: Any) -> pa.RecordBatch:
        import numpy as np
        import pyarrow as pa

        if isinstance(results, pa.RecordBatch):
            return results
        if isinstance(results, pa.Table):
            return one_batch(results)
        if _is_frame(results):
            return _frame_to_arrow(results)
        if _is_series(results):
            results = results.to_numpy()
        if isinstance(results, np.ndarray):
            if results.dtype == object:
                results = list(results)
            else:
                return pa.RecordBatch.from_arrays([_array_column(results)], names=[self.column])
        items = list(results)
        try:
            column = pa.array(items)
        except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError, TypeError, ValueError):
            return _json_column(items, self.column)
        if _holds_objects(column.type):  # Arrow gave every object the keys of all: keep them as written
            return _json_column(items, self.column)
        return pa.RecordBatch.from_arrays([column], names=[self.column])


class JsonOutput(OutputAdapter):
    """Every result as a JSON string in one column (``column``, default ``prediction``)."""

    def arrow_schema(self) -> pa.Schema:
        import pyarrow as pa

        return pa.schema([pa.field(self.column, pa.string(), metadata=JSON_ENCODING)])

    def to_arrow(self, results: Any) -> pa.RecordBatch:
        if _is_frame(results):
            return _json_column(results.to_dict(orient="records"), self.column)
        if hasattr(results, "tolist"):
            results = results.tolist()
        return _json_column(results, self.column)

    def to_json_rows(self, outputs: pa.Table) -> list[Any]:
        """The JSON values themselves, not the strings that hold them."""
        if outputs.num_columns != 1:
            return super().to_json_rows(outputs)
        return [json.loads(v) if v is not None else None for v in outputs.column(0).to_pylist()]


class DataframeOutput(OutputAdapter):
    """The result read as a DataFrame: one Arrow column per DataFrame column."""

    def to_arrow(self, results: Any) -> pa.RecordBatch:
        import pandas as pd

        if _is_series(results):
            results = results.to_frame(name=results.name or self.column)
        if not _is_frame(results):
            try:
                results = pd.DataFrame(results)
            except (ValueError, TypeError) as exc:
                raise InferenceError(
                    f"DataframeOutput cannot read a {type(results).__name__} as a DataFrame ({exc})"
                ) from None
            if list(results.columns) == [0]:
                results.columns = [self.column]
        return _frame_to_arrow(results)
