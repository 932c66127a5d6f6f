"""Adapters: Python payload -> Arrow -> function input, and results -> Arrow."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from kappa.adapters import (
    DataframeInput,
    DataframeOutput,
    DefaultOutput,
    FileInput,
    ImageInput,
    JsonInput,
    JsonOutput,
    NumpyInput,
)
from kappa.errors import InputError
from kappa.inference import TaskBatch


def _decode(adapter, batch):
    tasks = TaskBatch(batch.num_rows)
    return adapter.from_arrow(batch, tasks), tasks


class TestDataframeInput:
    def test_rows_without_names_keep_positional_columns(self):
        adapter = DataframeInput()
        batch = adapter.to_arrow([[5.1, 3.5], [4.9, 3.0]])
        assert batch.schema.names == ["0", "1"]
        frame, _ = _decode(adapter, batch)
        assert list(frame.columns) == [0, 1]
        assert frame.iloc[1, 1] == 3.0

    @pytest.mark.parametrize(
        "payload",
        [
            [{"a": 1.0, "b": 2.0}, {"a": 3.0, "b": 4.0}],
            {"a": [1.0, 3.0], "b": [2.0, 4.0]},
            {"columns": ["a", "b"], "data": [[1.0, 2.0], [3.0, 4.0]]},
            '[{"a": 1.0, "b": 2.0}, {"a": 3.0, "b": 4.0}]',
            pd.DataFrame({"a": [1.0, 3.0], "b": [2.0, 4.0]}),
        ],
    )
    def test_every_orient_reads_the_same_table(self, payload):
        adapter = DataframeInput(columns=["a", "b"])
        frame, _ = _decode(adapter, adapter.to_arrow(payload))
        assert frame.to_dict("list") == {"a": [1.0, 3.0], "b": [2.0, 4.0]}

    def test_declared_columns_select_and_order(self):
        adapter = DataframeInput(columns=["b", "a"])
        batch = pa.RecordBatch.from_pydict({"a": [1], "b": [2], "extra": [3]})
        frame, _ = _decode(adapter, batch)
        assert list(frame.columns) == ["b", "a"]

    def test_missing_columns_are_named(self):
        adapter = DataframeInput(columns=["a", "b", "c"])
        with pytest.raises(InputError, match=r"missing column\(s\) \['b', 'c'\]"):
            _decode(adapter, pa.RecordBatch.from_pydict({"a": [1]}))

    def test_wrong_type_is_named(self):
        adapter = DataframeInput(columns=["a"], dtype={"a": "float64"})
        with pytest.raises(InputError, match=r"column 'a' should be float64"):
            _decode(adapter, pa.RecordBatch.from_pydict({"a": ["x", "y"]}))

    def test_declares_schema_when_columns_and_dtypes_are_known(self):
        assert DataframeInput().arrow_schema() is None
        schema = DataframeInput(columns=["a", "b"], dtype={"a": "float64", "b": "int32"}).arrow_schema()
        assert schema == pa.schema([("a", pa.float64()), ("b", pa.int32())])

    def test_rows_of_the_wrong_width_are_rejected(self):
        with pytest.raises(InputError, match="expects 2 columns"):
            DataframeInput(columns=["a", "b"]).to_arrow([[1, 2, 3]])

    def test_bad_json_payload(self):
        with pytest.raises(InputError, match="not valid JSON"):
            DataframeInput().to_arrow("{nope")


class TestJsonInput:
    def test_round_trip_and_bad_rows_discarded(self):
        adapter = JsonInput()
        batch = adapter.to_arrow([{"a": 1}, [1, 2], "s"])
        assert batch.schema == adapter.arrow_schema()
        values, _ = _decode(adapter, batch)
        assert values == [{"a": 1}, [1, 2], "s"]
        values, tasks = _decode(adapter, pa.RecordBatch.from_pydict({"json": ['{"a": 1}', "{bad", None]}))
        assert values == [{"a": 1}]
        assert [t.row for t in tasks.discarded()] == [1, 2]

    def test_tabular_batch_becomes_records(self):
        values, _ = _decode(JsonInput(), pa.RecordBatch.from_pydict({"a": [1, 2], "b": ["x", "y"]}))
        assert values == [{"a": 1, "b": "x"}, {"a": 2, "b": "y"}]

    def test_batch_payload_must_be_a_list(self):
        with pytest.raises(InputError, match="takes a list"):
            JsonInput().to_arrow({"a": 1})


def _png(color):
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (4, 3), color).save(buffer, format="PNG")
    return buffer.getvalue()


class TestFileAndImageInput:
    def test_files_become_file_objects(self, tmp_path):
        path = tmp_path / "a.bin"
        path.write_bytes(b"hello")
        adapter = FileInput()
        batch = adapter.to_arrow([b"raw", str(path), io.BytesIO(b"io")])
        assert batch.schema == adapter.arrow_schema()
        files, _ = _decode(adapter, batch)
        assert [f.read() for f in files] == [b"raw", b"hello", b"io"]

    def test_missing_file_is_a_clear_error(self, tmp_path):
        with pytest.raises(InputError, match="cannot read"):
            FileInput().to_arrow([str(tmp_path / "missing")])

    def test_images_decode_to_arrays_and_garbage_is_discarded(self):
        adapter = ImageInput()
        batch = adapter.to_arrow([_png("red"), np.zeros((2, 2, 3), dtype=np.uint8)])
        images, _ = _decode(adapter, batch)
        assert images[0].shape == (3, 4, 3) and tuple(images[0][0, 0]) == (255, 0, 0)
        assert images[1].shape == (2, 2, 3)
        images, tasks = _decode(
            adapter, pa.RecordBatch.from_pydict({"image": [b"not an image", _png("blue")]})
        )
        assert len(images) == 1 and tuple(images[0][0, 0]) == (0, 0, 255)
        assert "cannot decode image" in tasks.discarded()[0].error.err_msg

    def test_image_formats_can_be_limited(self):
        adapter = ImageInput(accept_image_formats=["jpeg"])
        images, tasks = _decode(adapter, adapter.to_arrow([_png("red")]))
        assert images == [] and "not accepted" in tasks.discarded()[0].error.err_msg


class TestNumpyInput:
    def test_matrix_round_trip(self):
        adapter = NumpyInput(dtype="float32", shape=[2, 2])
        data = np.arange(12, dtype="float32").reshape(3, 2, 2)
        batch = adapter.to_arrow(data)
        assert batch.schema == adapter.arrow_schema()
        array, _ = _decode(adapter, batch)
        np.testing.assert_array_equal(array, data)

    def test_numeric_columns_are_stacked(self):
        array, _ = _decode(NumpyInput(), pa.RecordBatch.from_pydict({"a": [1.0, 2.0], "b": [3.0, 4.0]}))
        np.testing.assert_array_equal(array, [[1.0, 3.0], [2.0, 4.0]])

    def test_non_numeric_columns_are_named(self):
        with pytest.raises(InputError, match=r"\['b'\] are not numeric"):
            _decode(NumpyInput(), pa.RecordBatch.from_pydict({"a": [1.0], "b": ["x"]}))

    def test_wrong_item_shape(self):
        with pytest.raises(InputError, match="items of shape"):
            NumpyInput(shape=[3]).to_arrow(np.zeros((2, 4)))


class TestOutputs:
    def test_default_output_detects_kinds(self):
        out = DefaultOutput()
        assert out.to_arrow(np.array([1, 2])).column(0).to_pylist() == [1, 2]
        assert out.to_arrow(pd.Series([0.5, 1.5])).schema.names == ["prediction"]
        assert out.to_arrow(np.array([[1.0, 2.0], [3.0, 4.0]])).column(0).to_pylist() == [
            [1.0, 2.0],
            [3.0, 4.0],
        ]
        frame = out.to_arrow(pd.DataFrame({"label": ["a", "b"], "p": [0.1, 0.9]}))
        assert frame.schema.names == ["label", "p"]
        objects = out.to_arrow([{"a": 1}, {"a": 2, "b": "x"}])  # JSON text: no keys filled in
        assert objects.column(0).to_pylist() == ['{"a":1}', '{"a":2,"b":"x"}']
        assert out.to_json_rows(pa.Table.from_batches([objects])) == [{"a": 1}, {"a": 2, "b": "x"}]
        mixed = out.to_arrow([1, "two", {"three": 3}])
        assert mixed.column(0).to_pylist() == ["1", '"two"', '{"three":3}']

    def test_json_output(self):
        batch = JsonOutput().to_arrow([{"a": np.int64(1)}, [np.float32(0.5)]])
        assert batch.schema == JsonOutput().arrow_schema()
        assert batch.column(0).to_pylist() == ['{"a":1}', "[0.5]"]

    def test_dataframe_output(self):
        assert DataframeOutput().to_arrow([1, 2]).schema.names == ["prediction"]
        batch = DataframeOutput().to_arrow([{"x": 1, "y": 2}])
        assert batch.to_pylist() == [{"x": 1, "y": 2}]


@pytest.mark.parametrize("dtype", ["float64", "float32", "int64"])
def test_feature_matrices_decode_exactly_like_to_pandas(dtype):
    rng = np.random.default_rng(1)
    batch = pa.RecordBatch.from_pydict({f"f{i}": (rng.random(100) * 100).astype(dtype) for i in range(5)})
    frame, _ = _decode(DataframeInput(), batch)
    pd.testing.assert_frame_equal(frame, batch.to_pandas())
    np.testing.assert_array_equal(frame.to_numpy(), batch.to_pandas().to_numpy())
    with_null = pa.RecordBatch.from_pydict({"a": [1.0, None], "b": [2.0, 3.0]})
    pd.testing.assert_frame_equal(_decode(DataframeInput(), with_null)[0], with_null.to_pandas())


def _ipc_round_trip(batch: pa.RecordBatch) -> pa.RecordBatch:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, batch.schema) as writer:
        writer.write_batch(batch)
    return pa.ipc.open_stream(sink.getvalue()).read_next_batch()


@pytest.mark.parametrize("source", ["pandas block", "ipc", "ipc slice"])
def test_feature_matrices_read_equally_strided_columns_without_copying(source):
    import gc

    rng = np.random.default_rng(2)
    block = pd.DataFrame(rng.normal(size=(1000, 6)), columns=[f"f{i}" for i in range(6)])
    if source == "pandas block":  # the rows of one 2-D block, as a Dask partition gives them
        batch = pa.RecordBatch.from_arrays([pa.array(block[c].to_numpy()) for c in block], names=list(block))
    else:
        batch = _ipc_round_trip(pa.RecordBatch.from_pandas(block, preserve_index=False))
        if source == "ipc slice":
            batch, block = batch.slice(100, 500), block.iloc[100:600].reset_index(drop=True)
    frame, _ = _decode(DataframeInput(), batch)
    matrix = frame.to_numpy()
    first = batch.column(0).buffers()[1].address + batch.column(0).offset * 8
    assert matrix.__array_interface__["data"][0] == first  # a view of the batch's memory
    del batch
    gc.collect()  # the frame keeps the memory it views alive
    np.testing.assert_array_equal(matrix, block.to_numpy())
    pd.testing.assert_frame_equal(frame, block)
    frame["f0"] = 0.0  # writing to the frame copies (copy-on-write), never touches the batch
    assert (frame["f0"] == 0).all()
