"""BatchRunner: aligned outputs, error rows, bisection, whole-batch errors, per-process cache."""

from __future__ import annotations

import pyarrow as pa
import pytest

from kappa.errors import InputError
from kappa_batch.cache import load_service
from kappa_batch.runner import BatchRunner

SERVICE = """
import kappa
from kappa.adapters import DataframeInput, JsonInput

CALLS = []

class Flaky(kappa.BentoService):
    @kappa.api(input=DataframeInput(columns=["x"], dtype="int64"), batch=True)
    def square(self, df):
        CALLS.append(len(df))
        if (df["x"] == 13).any():
            raise ValueError("unlucky 13")
        return (df["x"] ** 2).tolist()

    @kappa.api(input=JsonInput(), batch=True)
    def picky(self, items, tasks):
        out = []
        for item, task in zip(items, tasks):
            if item < 0:
                task.discard(http_status=422, err_msg="negative")
            else:
                out.append(item)
        return out

    @kappa.api(input=DataframeInput(), batch=True)
    def short(self, df):
        return [0]
"""


@pytest.fixture
def module(make_module):
    return make_module(SERVICE)


def test_outputs_align_and_a_raising_row_is_isolated(module):
    runner = BatchRunner(module.Flaky(), "square")
    result = runner.run(pa.table({"x": list(range(20))}))
    values = result.outputs.column("prediction").to_pylist()
    assert values == [i * i if i != 13 else None for i in range(20)]
    assert result.errors.to_pylist() == [
        {"row": 13, "status": 500, "message": "ValueError: unlucky 13", "kind": "rejected"}
    ]
    assert result.ok_mask.to_pylist() == [i != 13 for i in range(20)]
    assert len(module.CALLS) < 20  # bisection, not one call per row


def test_discards_land_in_the_error_table(module):
    runner = BatchRunner(module.Flaky(), "picky")
    batch = runner.api.input_adapter.to_arrow([1, -1, 2, -5])
    result = runner.run(batch)
    assert result.outputs.column(0).to_pylist() == [1, None, 2, None]
    assert [(e["row"], e["status"], e["message"], e["kind"]) for e in result.errors.to_pylist()] == [
        (1, 422, "negative", "discarded"),
        (3, 422, "negative", "discarded"),
    ]


def test_wrong_length_fails_the_whole_batch_naming_api_and_lengths(module):
    runner = BatchRunner(module.Flaky(), "short")
    result = runner.run(pa.table({"x": [1, 2, 3]}))
    assert result.errors.num_rows == 3
    assert "Flaky.short returned 1 results for 3 inputs" in result.errors["message"][0].as_py()
    assert set(result.errors["kind"].to_pylist()) == {"invalid_output"}


def test_data_that_does_not_fit_raises(module):
    runner = BatchRunner(module.Flaky(), "square")
    with pytest.raises(InputError, match=r"missing column\(s\) \['x'\]"):
        runner.run(pa.table({"y": [1]}))


def test_services_are_loaded_once_per_process_by_digest(iris_service, tmp_path):
    path = iris_service.save_to_dir(str(tmp_path / "bundle"))
    first, manifest = load_service(path)
    second, _ = load_service(path)
    assert first is second
    assert BatchRunner(path, "predict").service is first
    assert manifest.digest == iris_service.manifest.digest
