"""Request bodies to Arrow: what the API takes, and a clear 400 otherwise."""

from __future__ import annotations

import pyarrow as pa
import pytest

from kappa.errors import InputError
from kappa_online.codec import conform


def test_a_row_wider_than_the_learned_columns_is_refused_not_cut():
    learned = pa.schema([(str(i), pa.float64()) for i in range(4)])
    wide = pa.RecordBatch.from_pydict({str(i): [1.0] for i in range(5)})
    with pytest.raises(InputError, match="expects rows of 4 values, got rows of 5"):
        conform(wide, learned)
    assert conform(wide.select([0, 1, 2, 3]), learned).num_columns == 4
