"""Input planning and re-batching: the same input is always cut into the same shards."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from kappa.errors import InputError
from kappa_batch.batching import rebatch
from kappa_batch.io import file_source, list_files, plan_parquet, read_planned


def test_rebatch_cuts_exact_sizes_whatever_the_chunks():
    chunks = [pa.record_batch({"x": list(range(a, b))}) for a, b in [(0, 3), (3, 4), (4, 15), (15, 16)]]
    sizes = [b.num_rows for b in rebatch(chunks, 5)]
    assert sizes == [5, 5, 5, 1]
    assert [v for b in rebatch(chunks, 5) for v in b.column(0).to_pylist()] == list(range(16))


def test_parquet_plan_gathers_whole_row_groups_within_a_file(tmp_path):
    for name, rows in (("a", 10), ("b", 7)):
        pq.write_table(pa.table({"x": list(range(rows))}), tmp_path / f"{name}.parquet", row_group_size=3)
    fs, files = list_files(str(tmp_path))
    plan = plan_parquet(fs, files, batch_size=5)
    assert [(s.file.rsplit("/", 1)[1], s.row_groups, s.offset, s.rows) for s in plan] == [
        ("a.parquet", (0, 1), 0, 6),
        ("a.parquet", (2, 3), 6, 4),
        ("b.parquet", (0, 1), 10, 6),
        ("b.parquet", (2,), 16, 1),
    ]
    rows = [v for s in plan for b in read_planned(fs, s, 2) for v in b.column(0).to_pylist()]
    assert rows == list(range(10)) + list(range(7))
    assert all(b.num_rows <= 2 for s in plan for b in read_planned(fs, s, 2))
    source = file_source(str(tmp_path), None, 5)
    assert source.total_rows == 17 and source.plan == plan


def test_unreadable_inputs_are_clear(tmp_path):
    (tmp_path / "bad.parquet").write_bytes(b"not parquet at all")
    with pytest.raises(InputError, match="cannot read input .*bad.parquet.* as parquet"):
        file_source(str(tmp_path / "bad.parquet"), None, 10)
    (tmp_path / "x.txt").write_text("?")
    with pytest.raises(InputError, match="cannot tell the format"):
        file_source(str(tmp_path / "x.txt"), None, 10)
    with pytest.raises(InputError, match="no input files match"):
        file_source(str(tmp_path / "*.csv"), None, 10)


def test_remote_inputs_read_like_local_ones(tmp_path):
    """fsspec inputs (memory:// here) give the same rows as the same files on disk, and count them."""
    import fsspec

    from kappa_batch.validate import count_rows

    table = pa.table({"a": list(range(25)), "b": [f"s{i}" for i in range(25)]})
    memory = fsspec.filesystem("memory")
    folder = f"/kappa-io-{tmp_path.name}"
    pq.write_table(table, tmp_path / "t.parquet", row_group_size=4)
    table.to_pandas().to_csv(tmp_path / "t.csv", index=False)
    table.to_pandas().to_json(tmp_path / "t.jsonl", orient="records", lines=True)
    for name in ("t.parquet", "t.csv", "t.jsonl"):
        memory.pipe(f"{folder}/{name}", (tmp_path / name).read_bytes())
    try:
        for name in ("t.parquet", "t.csv", "t.jsonl"):
            local = file_source(str(tmp_path / name), None, 10)
            remote = file_source(f"memory://{folder}/{name}", None, 10)
            if local.plan is not None:
                got = [b for s in remote.plan for b in read_planned(remote.fs, s, 10)]
            else:
                got = list(remote.batches)
            assert pa.Table.from_batches(got).to_pylist() == table.to_pylist(), name
            assert count_rows(f"memory://{folder}/{name}") == 25, name
    finally:
        memory.rm(folder, recursive=True)
