"""``DataframeInput``: one Arrow column per feature, a pandas DataFrame for the function."""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from kappa.adapters.base import InputAdapter, positional_names
from kappa.errors import InputError
from kappa.types import InferenceTask

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd
    import pyarrow as pa

ORIENTS = ("records", "columns", "split", "values", "index")


class DataframeInput(InputAdapter):
    """Tabular input: the function receives a ``pandas.DataFrame`` of the batch.

    ``columns`` names the features (in order) the function expects; ``dtype``
    is one dtype for all of them or a mapping column -> dtype. When both are
    given the adapter declares its Arrow schema and rejects batches that do
    not fit it, naming the column.
    """

    single_supported = False
    media_types = ("application/json", "text/csv")

    def __init__(
        self,
        orient: str = "records",
        columns: Sequence[str] | None = None,
        dtype: str | Mapping[str, str] | None = None,
    ) -> None:
        if orient not in ORIENTS:
            raise InputError(f"DataframeInput(orient={orient!r}): orient must be one of {ORIENTS}")
        if isinstance(dtype, Mapping) and columns is not None:
            unknown = sorted(set(dtype) - set(columns))
            if unknown:
                raise InputError(
                    f"DataframeInput: dtype names columns {unknown} that are not in columns={list(columns)}"
                )
        self.orient = orient
        self.columns = list(columns) if columns is not None else None
        self.dtype = dict(dtype) if isinstance(dtype, Mapping) else dtype

    def config(self) -> dict[str, Any]:
        return {"orient": self.orient, "columns": self.columns, "dtype": self.dtype}

    def _dtype_of(self, column: str) -> str | None:
        if isinstance(self.dtype, dict):
            return self.dtype.get(column)
        return self.dtype

    def arrow_schema(self) -> pa.Schema | None:
        if self.columns is None or self.dtype is None:
            return None
        import numpy as np
        import pyarrow as pa

        fields = []
        for column in self.columns:
            dtype = self._dtype_of(column)
            if dtype is None:
                return None
            try:
                fields.append(pa.field(column, pa.from_numpy_dtype(np.dtype(dtype))))
            except (TypeError, pa.ArrowNotImplementedError):
                return None
        return pa.schema(fields)

    # -- Python payload -> DataFrame -> Arrow ---------------------------------
    def to_dataframe(self, payload: Any) -> pd.DataFrame:
        """Read a payload in any of the accepted shapes into a DataFrame."""
        import pandas as pd

        if isinstance(payload, pd.DataFrame):
            return payload
        if hasattr(payload, "to_pandas") and hasattr(payload, "schema"):
            return payload.to_pandas()
        if isinstance(payload, (str, bytes)):
            try:
                payload = json.loads(payload)
            except ValueError as exc:
                raise InputError(f"DataframeInput: the payload is not valid JSON ({exc})") from None
        if isinstance(payload, Mapping):
            if "data" in payload and set(payload) <= {"columns", "data", "index"}:
                data = payload["data"]
                columns = payload.get("columns") or self.columns
                return pd.DataFrame(data, columns=columns)
            if self.orient == "index":
                return pd.DataFrame.from_dict(dict(payload), orient="index")
            return pd.DataFrame(dict(payload))
        try:
            frame = pd.DataFrame(payload)
        except (ValueError, TypeError) as exc:
            raise InputError(
                f"DataframeInput cannot read a {type(payload).__name__} as a table ({exc}); "
                "pass a DataFrame, a list of rows, a list of records or a dict of columns"
            ) from None
        if self.columns is not None and list(frame.columns) == list(range(frame.shape[1])):
            if frame.shape[1] != len(self.columns):
                raise InputError(
                    f"DataframeInput expects {len(self.columns)} columns {self.columns}, "
                    f"got rows of {frame.shape[1]} values"
                )
            frame.columns = self.columns
        return frame

    def to_arrow(self, payload: Any) -> pa.RecordBatch:
        import pyarrow as pa

        frame = self.to_dataframe(payload)
        names = [str(c) for c in frame.columns]
        if len(set(names)) != len(names):
            raise InputError(f"DataframeInput: duplicate column names {names}")
        try:
            return frame_to_arrow(frame.set_axis(names, axis=1))
        except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
            raise InputError(f"DataframeInput cannot convert the data to Arrow: {exc}") from None

    # -- wire formats: JSON rows or records, CSV ------------------------------
    def from_json(self, payload: Any) -> pa.RecordBatch:
        """Rows (``[[...], ...]``), records (``[{...}, ...]``) or ``{"columns", "data"}`` as Arrow.
        Rows and records of plain values go straight to Arrow; the rest through pandas."""
        if isinstance(payload, list) and not payload:
            raise InputError("the input holds no rows; send a list of rows or records")
        batch = _plain_rows(self, payload)
        return batch if batch is not None else super().from_json(payload)

    def from_http(self, body: bytes, media_type: str, files: list[bytes] | None = None) -> pa.RecordBatch:
        if files is None and media_type in ("text/csv", "application/csv"):
            return self.conform(_csv(body))
        return super().from_http(body, media_type, files)

    def openapi_request(self) -> dict[str, Any]:
        row = {"type": "array", "items": {}}
        example = [[5.1, 3.5, 1.4, 0.2]] if self.columns is None or len(self.columns) == 4 else None
        return {
            "application/json": {
                "schema": {
                    "oneOf": [{"type": "array", "items": row}, {"type": "array", "items": {"type": "object"}}]
                },
                "example": example,
            },
            "text/csv": {"schema": {"type": "string"}},
        }

    # -- Arrow -> DataFrame for the function ---------------------------------
    def from_arrow(self, batch: pa.RecordBatch, tasks: Sequence[InferenceTask[Any]]) -> pd.DataFrame:
        batch, done = self._normalize_arrow(batch)
        frame = _feature_matrix_frame(batch)
        if frame is None:
            frame = batch.to_pandas()
        if list(frame.columns) == positional_names(frame.shape[1]) and frame.shape[1] > 0:
            import pandas as pd

            frame.columns = pd.RangeIndex(frame.shape[1])
        return frame if done else self.normalize(frame)

    def slicer(self, value: Any) -> Callable[[int, int], pd.DataFrame] | None:
        import numpy as np
        import pandas as pd

        if not isinstance(value, pd.DataFrame) or any(
            isinstance(dtype, np.dtype) and dtype.kind == "O" for dtype in value.dtypes
        ):
            return None  # cells that are objects (dicts, lists) would be shared with ``value``
        copy = not _copy_on_write()  # pandas 2 shares the rows: the function could change ``value``

        def rows(start: int, stop: int) -> pd.DataFrame:
            piece = value.iloc[start:stop]
            if copy:
                piece = piece.copy()
            piece.index = pd.RangeIndex(stop - start)
            return piece

        return rows

    def _normalize_arrow(self, batch: pa.RecordBatch) -> tuple[pa.RecordBatch, bool]:
        """``normalize`` done on the Arrow batch when it can be (column selection, NumPy dtypes):
        much cheaper than in pandas for small batches. Returns the batch and whether it is done."""
        if self.columns is None or list(batch.schema.names) != list(self.columns):
            if self.columns is None or any(c not in batch.schema.names for c in self.columns):
                return batch, False  # positional names, or missing columns: pandas says what is wrong
            batch = batch.select(self.columns)
        if self.dtype is None:
            return batch, True
        schema = self.arrow_schema()
        if schema is None:
            return batch, False
        if batch.schema.equals(schema):
            return batch, True
        import pyarrow as pa

        try:
            return batch.cast(schema), True
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
            return batch, False  # pandas converts it, or says which column does not

    def coerce(self, payload: Any) -> pd.DataFrame:
        return self.normalize(self.to_dataframe(payload))

    def normalize(self, frame: pd.DataFrame) -> pd.DataFrame:
        """Select the declared columns in order and apply the declared dtypes."""
        if self.columns is not None:
            present = [str(c) for c in frame.columns]
            missing = [c for c in self.columns if c not in present]
            if missing:
                raise InputError(
                    f"input is missing column(s) {missing}; the API expects {self.columns} and got {present}"
                )
            frame = frame.set_axis(present, axis=1)[self.columns]
        if self.dtype is not None:
            frame = self._apply_dtypes(frame)
        return frame

    def _apply_dtypes(self, frame: pd.DataFrame) -> pd.DataFrame:
        wanted = (
            {c: self.dtype for c in frame.columns}
            if isinstance(self.dtype, str)
            else {c: t for c, t in (self.dtype or {}).items() if c in frame.columns}
        )
        for column, dtype in wanted.items():
            if str(frame[column].dtype) == dtype:
                continue
            try:
                frame[column] = frame[column].astype(dtype)
            except (ValueError, TypeError) as exc:
                raise InputError(
                    f"column {column!r} should be {dtype} but holds {frame[column].dtype} "
                    f"values that do not convert ({exc})"
                ) from None
        return frame


SCALARS = (int, float, str, bool, type(None))


def _plain_rows(adapter: DataframeInput, payload: Any) -> pa.RecordBatch | None:
    """Rows (``[[...], ...]``) or records (``[{...}, ...]``) of scalars straight to Arrow.

    Gives what the pandas route gives (names, types, nulls) without building a DataFrame
    per request; anything less regular goes that route (``None``).
    """
    import pyarrow as pa

    if not isinstance(payload, list) or not payload:
        return None
    first = payload[0]
    if isinstance(first, list):
        width = len(first)
        if any(not isinstance(row, list) or len(row) != width for row in payload):
            return None
        declared = adapter.columns
        if declared is not None and len(declared) != width:
            raise InputError(
                f"{adapter.describe()} expects {len(declared)} columns {list(declared)}, "
                f"got rows of {width} values"
            )
        names = list(declared) if declared is not None else positional_names(width)
        numeric = _numeric_rows(payload, width)
        if numeric is not None:
            return pa.RecordBatch.from_arrays(numeric, names=[str(n) for n in names]) if names else None
        columns: list[Any] = list(zip(*payload, strict=True))
    elif isinstance(first, dict):
        names = list(first)
        if any(not isinstance(row, dict) or list(row) != names for row in payload):
            return None
        columns = [[row[name] for row in payload] for name in names]
    else:
        return None
    if not names or len(set(names)) != len(names):
        return None
    arrays = []
    for column in columns:
        if any(not isinstance(value, SCALARS) for value in column):
            return None
        try:
            array = pa.array(column)
        except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):
            return None  # mixed kinds: pandas decides
        if pa.types.is_null(array.type):
            return None
        arrays.append(array)
    return pa.RecordBatch.from_arrays(arrays, names=[str(n) for n in names])


def _numeric_rows(payload: list[Any], width: int) -> list[pa.Array] | None:
    """Rows of plain numbers as columns, through one NumPy array (the common online request)."""
    import numpy as np
    import pyarrow as pa

    try:
        matrix = np.array(payload)
    except (ValueError, TypeError):
        return None
    if matrix.ndim != 2 or matrix.shape[1] != width or matrix.dtype.kind not in "fi":
        return None
    if any(type(v) is bool for row in payload for v in row):
        return None  # NumPy would read True as 1; pandas keeps booleans
    rows = matrix.shape[0]
    flat = pa.array(np.ascontiguousarray(matrix.T).ravel())  # one conversion, then zero-copy slices
    return [flat.slice(i * rows, rows) for i in range(width)]


def _csv(body: bytes) -> pa.RecordBatch:
    import io

    import pyarrow as pa
    import pyarrow.csv as pacsv

    from kappa.adapters.schema import one_batch

    try:
        table = pacsv.read_csv(io.BytesIO(body))
    except (pa.ArrowInvalid, ValueError) as exc:
        raise InputError(f"the request body is not valid CSV with a header row: {exc}") from None
    if table.num_rows == 0:
        raise InputError("the CSV holds no rows")
    return one_batch(table)


def frame_to_arrow(frame: pd.DataFrame) -> pa.RecordBatch:
    """A pandas DataFrame as one Arrow batch (its index left out), the one way every engine does it:
    numeric NumPy columns without copying (NaN stays NaN), others as ``pa.Array.from_pandas``."""
    import numpy as np
    import pyarrow as pa

    arrays = []
    for _, column in frame.items():
        if isinstance(column.dtype, np.dtype) and column.dtype.kind in "iuf":
            arrays.append(pa.array(column.to_numpy()))
        else:
            arrays.append(pa.Array.from_pandas(column))
    return pa.RecordBatch.from_arrays(arrays, names=[str(c) for c in frame.columns])


def _feature_matrix_frame(batch: pa.RecordBatch) -> pd.DataFrame | None:
    """The DataFrame ``batch.to_pandas()`` gives, built faster for feature matrices.

    When every column has one numeric type and no nulls, each column is copied once,
    contiguously, into a column-major matrix that the DataFrame wraps without copying;
    ``df.to_numpy()`` in the user function then returns that matrix as is.
    """
    import pyarrow as pa

    types = set(batch.schema.types)
    if batch.num_columns < 2 or batch.num_rows == 0 or len(types) != 1:
        return None
    (arrow_type,) = types
    if not (pa.types.is_floating(arrow_type) or pa.types.is_integer(arrow_type)):
        return None
    if any(column.null_count for column in batch.columns):
        return None
    import numpy as np
    import pandas as pd

    dtype = np.dtype(arrow_type.to_pandas_dtype())
    matrix = _strided_matrix(batch, dtype)
    if matrix is None:
        rows = np.empty((batch.num_columns, batch.num_rows), dtype=dtype)
        for index, column in enumerate(batch.columns):
            rows[index] = column.to_numpy()
        matrix = rows.T
    return pd.DataFrame(matrix, columns=_column_index(tuple(batch.schema.names)), copy=False)


def _copy_on_write() -> bool:
    """Whether pandas copies a slice before changing it (always from pandas 3)."""
    import pandas as pd

    return int(pd.__version__.split(".")[0]) >= 3 or bool(pd.options.mode.copy_on_write is True)


@functools.lru_cache(maxsize=256)
def _column_index(names: tuple[str, ...]) -> pd.Index:
    """The (immutable) column index for these names, built once: cheap small-batch frames."""
    import pandas as pd

    return pd.Index(list(names))


def _strided_matrix(batch: pa.RecordBatch, dtype: np.dtype[Any]) -> np.ndarray[Any, Any] | None:
    """The columns as one (rows x columns) matrix without copying, when they lie in memory
    at equal distances: the rows of a pandas block, or the columns of one Arrow IPC body.

    The matrix keeps ``batch`` alive through the buffer it is read from.
    """
    import numpy as np
    import pyarrow as pa

    size = dtype.itemsize
    addresses = [c.buffers()[1].address + c.offset * size for c in batch.columns]
    stride = addresses[1] - addresses[0]
    if stride < batch.num_rows * size or stride % size:
        return None
    if any(b - a != stride for a, b in zip(addresses, addresses[1:], strict=False)):
        return None
    span = stride * (batch.num_columns - 1) + batch.num_rows * size
    flat = np.frombuffer(pa.foreign_buffer(addresses[0], span, base=batch), dtype=dtype)
    return np.lib.stride_tricks.as_strided(
        flat, shape=(batch.num_rows, batch.num_columns), strides=(size, stride), writeable=False
    )
