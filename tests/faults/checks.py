"""What every fault test ends with (issue 21): each input row exactly once in output + errors."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow.parquet as pq


def doubler(seconds_per_batch: float = 0.0) -> str:
    """The source of the service every fault test scores with: ``Doubler.score`` doubles the
    column ``a``, takes ``seconds_per_batch`` per batch (so a fault lands mid-run), and raises on
    a batch that holds a negative ``a`` (so the run has rows in error)."""
    return f"""
import time
import kappa
from kappa.adapters import DataframeInput

class Doubler(kappa.BentoService):
    @kappa.api(input=DataframeInput(columns=["a"], dtype="float64"), batch=True)
    def score(self, df):
        time.sleep({seconds_per_batch!r})
        if (df["a"] < 0).any():
            raise ValueError("negative a")
        return (df["a"] * 2).tolist()
"""


def doubler_input(path: Path, n: int, bad: list[int], row_group_size: int) -> list[str]:
    """``n`` rows ``id`` (``r0`` ...) and ``a`` for :func:`doubler`'s service, as Parquet at ``path`` in
    row groups of ``row_group_size``; the rows at ``bad`` get a negative ``a`` (they raise).
    Returns the ids of those rows."""
    import numpy as np

    a = np.arange(n, dtype="float64")
    a[bad] = -1.0
    pd.DataFrame({"id": [f"r{i}" for i in range(n)], "a": a}).to_parquet(path, row_group_size=row_group_size)
    return [f"r{i}" for i in bad]


def exactly_once(
    target: Path | str, n: int, bad_ids: list[str], report_file: Path, storage: dict[str, Any] | None = None
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """The scored rows of a committed output (a folder or an fsspec URL opened with ``storage``);
    asserts that the ``n`` input ids appear exactly once across it and its errors file, that the
    errors are ``bad_ids``, that the report says it succeeded, and that no temporary file is left.
    Returns the scored rows and the report."""
    from fsspec.core import url_to_fs

    fs, root = url_to_fs(str(target), **(storage or {}))
    fs.invalidate_cache()

    def read(path: str) -> pd.DataFrame:  # a Parquet file, or a folder of them (Spark's)
        if fs.isdir(path):
            return pd.concat([read(f) for f in sorted(fs.glob(f"{path}/part-*.parquet"))])
        return pq.read_table(io.BytesIO(fs.cat_file(path))).to_pandas()

    scored = pd.concat([read(f) for f in sorted(fs.glob(f"{root}/part-*.parquet"))])
    errors = read(f"{root}/_errors.parquet")
    ids = list(scored["id"]) + list(errors["id"])
    assert len(ids) == n and len(set(ids)) == n  # every input row exactly once
    assert sorted(errors["id"]) == sorted(bad_ids)
    report: dict[str, Any] = json.loads(report_file.read_text())
    assert report["status"] == "succeeded" and report["rows_in"] == n
    assert not [f for f in fs.find(root) if "/.tmp-" in f]
    return scored, report
