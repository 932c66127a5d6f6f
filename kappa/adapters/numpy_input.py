"""``NumpyInput``: numeric features or tensors, a ``numpy.ndarray`` for the function."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from kappa.adapters.base import InputAdapter
from kappa.errors import InputError
from kappa.types import InferenceTask

if TYPE_CHECKING:
    import numpy as np
    import pyarrow as pa

COLUMN = "array"


class NumpyInput(InputAdapter):
    """Array input: a batch function gets one ``ndarray`` whose first axis is the batch.

    Arrow form: one column ``array`` of fixed-size lists (one per row, flattened
    item of ``shape``), a single numeric column (scalar items), or several
    numeric columns (stacked as features).
    """

    def __init__(self, dtype: str | None = None, shape: Sequence[int] | None = None) -> None:
        self.dtype = dtype
        self.shape = tuple(shape) if shape is not None else None

    def config(self) -> dict[str, Any]:
        return {"dtype": self.dtype, "shape": list(self.shape) if self.shape is not None else None}

    def arrow_schema(self) -> pa.Schema | None:
        if self.dtype is None or self.shape is None:
            return None
        import numpy as np
        import pyarrow as pa

        value_type = pa.from_numpy_dtype(np.dtype(self.dtype))
        if self.shape == ():
            return pa.schema([pa.field(COLUMN, value_type)])
        return pa.schema([pa.field(COLUMN, pa.list_(value_type, math.prod(self.shape)))])

    def coerce(self, payload: Any) -> np.ndarray:
        import numpy as np

        try:
            array = np.asarray(payload, dtype=self.dtype)
        except (ValueError, TypeError) as exc:
            raise InputError(f"NumpyInput cannot read the payload as an array ({exc})") from None
        if array.ndim == 0:
            raise InputError("NumpyInput with batch=True takes an array whose first axis is the batch")
        if self.shape is not None and array.shape[1:] != self.shape:
            raise InputError(f"NumpyInput expects items of shape {self.shape}, got {array.shape[1:]}")
        return array

    def to_arrow(self, payload: Any) -> pa.RecordBatch:
        import pyarrow as pa

        array = self.coerce(payload)
        if array.ndim == 1:
            column = pa.array(array)
        else:
            flat = array.reshape(array.shape[0], -1)
            column = pa.FixedSizeListArray.from_arrays(pa.array(flat.ravel()), flat.shape[1])
        return pa.RecordBatch.from_arrays([column], names=[COLUMN])

    def from_arrow(self, batch: pa.RecordBatch, tasks: Sequence[InferenceTask[Any]]) -> np.ndarray:
        import numpy as np
        import pyarrow as pa

        if batch.num_columns == 1 and pa.types.is_fixed_size_list(batch.schema.types[0]):
            column = batch.column(0)
            if column.null_count:
                raise InputError(f"NumpyInput: column {batch.schema.names[0]!r} has null rows")
            width = batch.schema.types[0].list_size
            array = column.flatten().to_numpy(zero_copy_only=False).reshape(len(column), width)
            if self.shape is not None:
                array = array.reshape((len(column), *self.shape))
        elif batch.num_columns == 1:
            array = batch.column(0).to_numpy(zero_copy_only=False)
        else:
            bad = [
                f.name
                for f in batch.schema
                if not (pa.types.is_integer(f.type) or pa.types.is_floating(f.type))
            ]
            if bad:
                raise InputError(f"NumpyInput needs numeric columns; {bad} are not numeric")
            array = np.column_stack([c.to_numpy(zero_copy_only=False) for c in batch.columns])
        if self.dtype is not None:
            try:
                array = array.astype(self.dtype, copy=False)
            except (ValueError, TypeError) as exc:
                raise InputError(f"NumpyInput cannot cast the input to {self.dtype} ({exc})") from None
        result: np.ndarray = array
        return result

    def slicer(self, value: Any) -> Callable[[int, int], np.ndarray] | None:
        import numpy as np

        if not isinstance(value, np.ndarray) or value.dtype == object:
            return None  # cells that are objects would be shared with ``value``

        def rows(start: int, stop: int) -> np.ndarray:
            piece = value[start:stop].copy()
            piece.flags.writeable = value.flags.writeable  # as decoding the slice would give it
            return piece

        return rows
