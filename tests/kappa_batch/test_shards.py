"""The shard committer in process: output specs, shards joined into one file, resume checks."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from kappa.errors import InputError
from kappa_batch.shards import OutputSpec, ShardedOutput

RUN = {
    "bundle_digest": "sha256:1",
    "api": "predict",
    "input": "in.csv",
    "input_files": [],
    "batch_size": 2,
    "format": "parquet",
    "id_column": None,
}


def test_specs_for_folders_and_single_files(tmp_path):
    folder = OutputSpec.parse(str(tmp_path / "out") + "/", None, None)
    assert (folder.fmt, folder.single_file, folder.errors_url) == (
        "parquet",
        False,
        f"{tmp_path}/out/_errors.parquet",
    )
    single = OutputSpec.parse(str(tmp_path / "preds.csv"), None, None)
    assert (single.fmt, single.single_file, single.errors_url) == (
        "csv",
        True,
        f"{tmp_path}/preds.errors.parquet",
    )
    with pytest.raises(InputError, match="does not match the output file name"):
        OutputSpec.parse(str(tmp_path / "preds.csv"), "jsonl", None)
    with pytest.raises(InputError, match="unknown output format"):
        OutputSpec.parse(str(tmp_path / "o"), "xlsx", None)


def test_shards_join_into_one_file_whose_columns_fit_every_shard(tmp_path):
    output = ShardedOutput(OutputSpec.parse(str(tmp_path / "preds.parquet"), None, None))
    assert output.prepare(RUN, resume=False, overwrite=False) == set()
    errors = pa.table(
        {
            "_row": pa.array([], pa.int64()),
            "_status": pa.array([], pa.int32()),
            "_message": pa.array([], pa.string()),
        }
    )
    # a shard whose rows all failed has a null-typed output column; the join gives it the real type
    output.write_shard(0, pa.table({"_row": [0, 1], "prediction": [1.5, 2.5]}), errors)
    output.write_shard(
        1, pa.table({"_row": pa.array([], pa.int64()), "prediction": pa.array([], pa.null())}), errors
    )
    output.commit(2, {"rows_in": 2}, success=True)
    joined = pq.read_table(tmp_path / "preds.parquet")
    assert joined.schema.field("prediction").type == pa.float64()
    assert joined.to_pylist() == [{"_row": 0, "prediction": 1.5}, {"_row": 1, "prediction": 2.5}]
    assert pq.read_table(tmp_path / "preds.errors.parquet").schema.names == ["_row", "_status", "_message"]
    assert not (tmp_path / "preds.parquet.kappa-parts").exists()
    assert output.committed()["report"] == {"rows_in": 2}


def test_resume_refuses_other_settings_and_existing_outputs_need_a_choice(tmp_path):
    spec = OutputSpec.parse(str(tmp_path / "out"), None, None)
    ShardedOutput(spec).prepare(RUN, resume=False, overwrite=False)
    with pytest.raises(InputError, match="already exists; pass --overwrite"):
        ShardedOutput(spec).prepare(RUN, resume=False, overwrite=False)
    with pytest.raises(InputError, match=r"other settings \(batch_size: 2 -> 3\)"):
        ShardedOutput(spec).prepare({**RUN, "batch_size": 3}, resume=True, overwrite=False)
    assert ShardedOutput(spec).prepare(RUN, resume=True, overwrite=False) == set()
