"""What every fault test ends with (issue 21): each input row exactly once in output + errors."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow.parquet as pq


def exactly_once(
    target: Path, n: int, bad_ids: list[str], report_file: Path
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """The scored rows of a committed output; asserts that the ``n`` input ids appear exactly once
    across it and its errors file, that the errors are ``bad_ids``, that the report says it
    succeeded, and that no temporary file is left. Returns the scored rows and the report."""
    scored = pd.concat([pq.read_table(f).to_pandas() for f in sorted(target.glob("part-*.parquet"))])
    errors = pq.read_table(target / "_errors.parquet").to_pandas()
    ids = list(scored["id"]) + list(errors["id"])
    assert len(ids) == n and len(set(ids)) == n  # every input row exactly once
    assert sorted(errors["id"]) == sorted(bad_ids)
    report: dict[str, Any] = json.loads(report_file.read_text())
    assert report["status"] == "succeeded" and report["rows_in"] == n
    assert not list(target.rglob(".tmp-*"))
    return scored, report
