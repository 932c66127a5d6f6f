"""Check a finished run's report against the files it describes (a DAG's validation step)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kappa.errors import KappaError

HIDDEN = ("_", ".")


def count_rows(url: str) -> int:
    """Rows in a Parquet/CSV/JSON Lines file or folder (hidden and ``_``-prefixed entries skipped)."""
    import pyarrow.dataset as ds

    from kappa_batch.io import FORMATS, filesystem, format_of, is_local_fs

    fs, root = filesystem(url)
    if fs.isdir(root):
        files = [
            path
            for path in fs.find(root)
            if not any(part.startswith(HIDDEN) for part in path[len(root) :].split("/") if part)
            and path.lower().endswith(tuple(FORMATS))
        ]
    else:
        files = [root]
    if not files:
        return 0
    kind = format_of(files[0])
    if is_local_fs(fs):
        dataset_format = {"parquet": "parquet", "csv": "csv", "jsonl": "json"}.get(kind, kind)
        return int(ds.dataset(files, format=dataset_format).count_rows())
    return sum(_count_remote(fs, file, kind) for file in files)


def _count_remote(fs: Any, file: str, kind: str) -> int:
    """Rows of one remote file, read the way ``kappa run`` reads it (see ``kappa_batch.io.parquet_file``)."""
    from kappa_batch.io import parquet_file, remote_text

    if kind == "parquet":
        parquet = parquet_file(fs, file)
        try:
            return int(parquet.metadata.num_rows)
        finally:
            parquet.close(force=True)
    return sum(batch.num_rows for batch in remote_text(fs, [file], kind))


def validate_report(report: Mapping[str, Any], input_path: str | None = None) -> dict[str, Any]:
    """Raise unless rows in = out + error and the output, errors and input files hold those rows."""
    rows_in, rows_out, rows_error = (int(report[k]) for k in ("rows_in", "rows_out", "rows_error"))
    problems = []
    if rows_in != rows_out + rows_error:
        problems.append(f"rows in ({rows_in}) != rows out ({rows_out}) + rows in error ({rows_error})")
    written = count_rows(str(report["output"]))
    if written != rows_out:
        problems.append(f"the output {report['output']} holds {written} rows, the report says {rows_out}")
    if report.get("errors_file"):
        failed = count_rows(str(report["errors_file"]))
        if failed != rows_error:
            problems.append(f"the errors file holds {failed} rows, the report says {rows_error}")
    if input_path is not None:
        read = count_rows(input_path)
        if read != rows_in:
            problems.append(f"the input {input_path} holds {read} rows, the run read {rows_in}")
    if problems:
        raise KappaError("row counts do not add up: " + "; ".join(problems))
    return {"rows_in": rows_in, "rows_out": rows_out, "rows_error": rows_error, "output": report["output"]}
