"""The one scorer: ids, the one error shape with typed kinds, unreadable rows, aligned columns, splits."""

from __future__ import annotations

import pyarrow as pa
import pytest

import kappa
from kappa.adapters import DataframeInput, DefaultOutput
from kappa.errors import InputError, KappaError
from kappa_batch.csvread import INPUT_ERROR_COLUMN
from kappa_batch.runner import BatchRunner
from kappa_batch.scoring import ERROR_FIELDS, ROW_ID, score_batch


class Doubler(kappa.BentoService):
    @kappa.api(input=DataframeInput(), output=DefaultOutput(dtype="float64"), batch=True)
    def predict(self, df):  # type: ignore[no-untyped-def]
        if (df["x"] < 0).any():
            raise ValueError("negative x")
        if (df["x"] > 1000).any():
            raise RuntimeError("overflow")
        return (2 * df["x"]).to_numpy()


@pytest.fixture(scope="module")
def runner() -> BatchRunner:
    return BatchRunner(Doubler(), "predict")


def test_rows_without_an_id_column_are_numbered_from_the_offset(runner):
    scored = score_batch(runner, pa.table({"x": [1.0, -1.0, 3.0]}), offset=100)
    assert scored.outputs().to_pylist() == [
        {ROW_ID: 100, "prediction": 2.0},
        {ROW_ID: 102, "prediction": 6.0},
    ]
    assert scored.errors().to_pylist() == [
        {ROW_ID: 101, "_status": 500, "_message": "ValueError: negative x"}
    ]
    assert scored.errors().schema.field("_status").type == pa.int32()
    assert (scored.rows_in, scored.rows_out, scored.rows_error) == (3, 2, 1)


def test_an_id_column_is_taken_out_of_what_the_model_sees(runner):
    batch = pa.table({"key": ["a", "b"], "x": [1.0, 2.0]})
    scored = score_batch(runner, batch, id_column="key")
    assert scored.outputs().to_pylist() == [{"key": "a", "prediction": 2.0}, {"key": "b", "prediction": 4.0}]
    with pytest.raises(InputError, match="id_column\\) 'nope' is not in the input"):
        score_batch(runner, batch, id_column="nope")
    with pytest.raises(InputError, match="like the id column"):
        score_batch(runner, pa.table({"prediction": [1], "x": [1.0]}), id_column="prediction").outputs()


def test_failures_are_typed_by_kind_not_by_message(runner):
    scored = score_batch(runner, pa.table({"x": [1.0, -1.0, 5000.0]}))
    assert [(e["row"], e["kind"]) for e in scored.result.errors.to_pylist()] == [
        (1, "rejected"),
        (2, "raised"),
    ]


def test_unreadable_rows_fail_in_place_without_reaching_the_model(runner):
    batch = pa.table(
        {"x": [1.0, None, 3.0], INPUT_ERROR_COLUMN: [None, "column 'x': cannot read 'abc'", None]}
    )
    scored = score_batch(runner, batch, ids=pa.array(["p", "q", "r"]), reader_errors=True)
    assert scored.result.outputs.column("prediction").to_pylist() == [2.0, None, 6.0]
    assert scored.errors().to_pylist() == [
        {"_row": "q", "_status": 400, "_message": "column 'x': cannot read 'abc'"}
    ]
    assert scored.kinds() == ["unreadable"]
    nothing = score_batch(runner, batch.slice(1, 1), reader_errors=True)  # the model is not called
    assert (nothing.rows_in, nothing.rows_error) == (1, 1)
    elsewhere = score_batch(runner, pa.table({"x": [1.0], INPUT_ERROR_COLUMN: ["mine"]}))  # a user's column
    assert elsewhere.rows_error == 0


def test_columns_align_every_row_to_the_declared_outputs(runner):
    scored = score_batch(runner, pa.table({"id": [7, 8], "x": [-1.0, 2.0]}), id_column="id")
    declared = pa.schema([("prediction", pa.float32()), ("extra", pa.string())])
    ids, prediction, extra, status, message = scored.columns(declared, with_id=True, with_errors=True)
    assert ids.to_pylist() == [7, 8] and prediction.type == pa.float32()
    assert prediction.to_pylist() == [None, 4.0] and extra.null_count == 2
    assert status.to_pylist() == [500, None] and message.to_pylist() == ["ValueError: negative x", None]
    assert [status.type, message.type] == [f.type for f in ERROR_FIELDS]
    with pytest.raises(
        KappaError, match="1 row\\(s\\) failed in .* first: status 500: ValueError: negative x"
    ):
        scored.raise_first_error("Doubler:1", "predict")


def test_split_hands_each_request_its_own_rows_numbered_from_zero(runner):
    scored = score_batch(runner, pa.table({"x": [1.0, -1.0, 2.0, 3.0, -2.0]}))
    first, second, third = scored.split([2, 1, 2])
    assert first.result.outputs.column(0).to_pylist() == [2.0, None]
    assert first.result.errors["row"].to_pylist() == [1]
    assert second.rows_error == 0 and second.result.outputs.column(0).to_pylist() == [4.0]
    assert third.result.errors["row"].to_pylist() == [1] and third.ids.to_pylist() == [3, 4]
