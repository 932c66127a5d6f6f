"""BatchRunner: aligned outputs, error rows, the search for raising rows, whole-batch errors,
per-process cache."""

from __future__ import annotations

import pyarrow as pa
import pytest

from kappa.errors import InputError
from kappa_batch.cache import load_service
from kappa_batch.runner import BatchRunner

SERVICE = """
import kappa
from kappa.adapters import DataframeInput, JsonInput, NumpyInput

CALLS = []


class BrokenSlices(DataframeInput):
    def slicer(self, value):
        raise RuntimeError("no slices today")

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

    @kappa.api(input=DataframeInput(columns=["x"], dtype="int64"), batch=True)
    def changes_its_input(self, df):
        df["x"] += 1
        if (df["x"] == 14).any():
            raise ValueError("unlucky 13")
        return df["x"].tolist()

    @kappa.api(input=NumpyInput(), batch=True)
    def changes_its_array(self, array):
        array += 1  # two columns decode to a writable array
        if (array[:, 0] == 14).any():
            raise ValueError("unlucky 13")
        return array[:, 0].tolist()

    @kappa.api(input=NumpyInput(), batch=True)
    def adds_one(self, array):
        array += 1  # one column decodes to a read-only view of the Arrow data: this raises
        return array.tolist()

    @kappa.api(input=BrokenSlices(), batch=True)
    def broken_slices(self, df):
        if (df["x"] == 13).any():
            raise ValueError("unlucky 13")
        return df["x"].tolist()

    @kappa.api(input=DataframeInput(), batch=True)
    def pops_a_key(self, df):
        keys = [cell.pop("k") for cell in df["d"]]
        if 13 in keys:
            raise ValueError("unlucky 13")
        return keys

    @kappa.api(input=DataframeInput(), batch=True)
    def echo_header(self, df, tasks):
        if (df["x"] == 13).any():
            raise ValueError("unlucky 13")
        return [task.http_headers.get("X-Id") for task in tasks]
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
    assert len(module.CALLS) < 20  # a search, not one call per row


@pytest.mark.parametrize("pandas_copies", [False, True])
@pytest.mark.parametrize("api", ["changes_its_input", "changes_its_array", "pops_a_key"])
def test_parts_of_a_raising_batch_see_its_rows_as_read(module, api, pandas_copies, monkeypatch):
    """The call that raised changed its input (columns, an array, dicts in cells); the parts
    are scored from the rows as read, so only the bad row fails. ``pandas_copies``: pandas 2,
    whose slices share rows, is copied."""
    import kappa.adapters.dataframe

    if pandas_copies:
        monkeypatch.setattr(kappa.adapters.dataframe, "_copy_on_write", lambda: False)
    runner = BatchRunner(module.Flaky(), api)
    rows = range(40)
    if api == "pops_a_key":
        batch = pa.table({"d": [{"k": x} for x in rows]})
        expected = [x if x != 13 else None for x in rows]
    else:
        batch = pa.table({"x": list(rows), "y": list(rows)})
        expected = [x + 1 if x != 13 else None for x in rows]
    result = runner.run(batch)
    assert result.outputs.column(0).to_pylist() == expected
    assert result.errors["row"].to_pylist() == [13]


def test_an_adapter_that_cannot_slice_is_not_the_rows_fault(module):
    """A slicer that raises: the parts are decoded from Arrow, and only the bad row fails."""
    result = BatchRunner(module.Flaky(), "broken_slices").run(pa.table({"x": list(range(30))}))
    assert result.outputs.column(0).to_pylist() == [x if x != 13 else None for x in range(30)]
    assert result.errors["row"].to_pylist() == [13]


def test_a_part_is_as_writable_as_its_batch(module):
    """One column decodes read-only: changing it fails on every row, whatever the batch size."""
    runner = BatchRunner(module.Flaky(), "adds_one")
    for size in (1, 5):
        result = runner.run(pa.table({"x": list(range(size))}))
        assert result.errors["row"].to_pylist() == list(range(size))
        assert "read-only" in result.errors["message"][0].as_py()


def test_an_empty_batch_that_raises_gives_empty_tables(module):
    runner = BatchRunner(module.Flaky(), "adds_one")
    result = runner.run(pa.table({"x": pa.array([], pa.int64())}))
    assert result.outputs.num_rows == 0 and result.errors.num_rows == 0


def test_parts_keep_each_rows_request_headers(module):
    runner = BatchRunner(module.Flaky(), "echo_header")
    rows = list(range(30))
    result = runner.run(pa.table({"x": rows}), headers=[{"X-Id": f"r{x}"} for x in rows])
    assert result.outputs.column(0).to_pylist() == [f"r{x}" if x != 13 else None for x in rows]
    assert result.errors["row"].to_pylist() == [13]


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
