"""Spark reads and writes any fsspec URL (``s3://``, ``gs://``, ``az://``, ``memory://``...) without Hadoop
connector jars: a Spark 4 Python data source over fsspec and pyarrow that moves Arrow batches.

``hdfs://``, plain paths and the Hadoop connectors' own schemes (``s3a://``, ``wasbs://``...) keep
Spark's readers and writers (:func:`uses_fsspec`).

Reading: the files are listed and ordered as ``kappa run`` orders them; Parquet is cut into
tasks of whole row groups, text files are one task each. With ``rowIds`` every row gets the
``_row`` id ``kappa run`` gives it (its position in the whole input): the planner knows every
task's first row (Parquet footers; text files are counted once, in the driver, which also takes
the schema from the first file then).

Writing: every task writes its own file (``part-<task>-<job>.<ext>``, one object, complete or
absent); the job's commit then removes the files of earlier runs (of the partitions it wrote,
with ``partitionBy``), so a re-run replaces its output like Spark's ``mode("overwrite")``, and
an aborted job removes what its tasks wrote.
"""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import pyarrow as pa

from kappa.errors import InputError
from kappa_batch.io import (
    PlannedShard,
    filesystem,
    format_of,
    guarded,
    list_files,
    parquet_file,
    plan_parquet,
    read_planned,
    remote_text,
)
from kappa_batch.scoring import ROW_ID

NAME = "kappa_files"
SPARK_SCHEMES = frozenset({"", "file", "local", "hdfs", "viewfs", "s3a", "s3n", "wasb", "wasbs", "adl"})
TASK_ROWS = 1 << 20  # Parquet tasks: whole row groups until about this many rows
WRITE_FORMATS = ("parquet", "csv")


def uses_fsspec(url: str) -> bool:
    """Whether ``url`` is read and written through fsspec here (its scheme is not one Spark handles)."""
    return urlsplit(url).scheme.lower() not in SPARK_SCHEMES


_registered: set[str] = set()  # Spark applications this process registered the source with


def register(spark: Any) -> None:
    application = spark.sparkContext.applicationId
    if application not in _registered:
        spark.dataSource.register(_source_class())
        _registered.add(application)


def read(spark: Any, url: str, fmt: str | None, row_ids: bool) -> Any:
    """``url``'s files as a DataFrame (with a ``_row`` column when ``row_ids``).

    Planned here, in the driver, once: Spark asks a data source for its schema and partitions in
    Python processes of its own, which then only decode the plan instead of listing the store.
    """
    from pyspark.sql.pandas.types import from_arrow_schema

    register(spark)
    kind, parts, schema = plan(url, fmt)
    full = schema.append(pa.field(ROW_ID, pa.int64())) if row_ids else schema
    planned = {
        "kind": kind,
        "rowIds": row_ids,
        "schema": base64.b64encode(schema.serialize().to_pybytes()).decode(),
        "parts": [[p.file, p.row_groups, p.offset, p.rows] for p in parts],
    }
    reader = spark.read.format(NAME).schema(from_arrow_schema(full)).option("path", url)
    return reader.option("plan", json.dumps(planned)).load()


def decode_plan(text: str) -> tuple[str, list[PlannedShard], bool, pa.Schema]:
    planned = json.loads(text)
    parts = [PlannedShard(i, f, tuple(g), o, n) for i, (f, g, o, n) in enumerate(planned["parts"])]
    schema = pa.ipc.read_schema(pa.py_buffer(base64.b64decode(planned["schema"])))
    return planned["kind"], parts, bool(planned["rowIds"]), schema


def write(df: Any, url: str, fmt: str, partition_by: Sequence[str] = ()) -> None:
    """``df`` as files under ``url``, replacing what an earlier run wrote there (see the module doc)."""
    if fmt not in WRITE_FORMATS:
        raise InputError(f"writing {fmt} to {url} is not supported; use {' or '.join(WRITE_FORMATS)}")
    register(df.sparkSession)
    writer = df.write.format(NAME).mode("overwrite").option("path", url).option("format", fmt)
    writer.option("partitionBy", json.dumps(list(partition_by))).save()


# -- planning (driver) ----------------------------------------------------------------------


def plan(url: str, fmt: str | None) -> tuple[str, list[PlannedShard], pa.Schema]:
    """The input's kind, its read tasks (Parquet: whole row groups; text: whole files, with
    ``row_groups`` empty) with the position of each task's first row, and the first file's schema."""
    fs, files = list_files(url)
    kind = format_of(files[0] if not fmt else "", fmt or None)
    if kind == "json":
        raise InputError(f"{url}: JSON arrays cannot be split for Spark; use JSON Lines (.jsonl) or Parquet")
    files = [f for f in files if format_of(f, fmt or None) == kind] if not fmt else files
    if kind == "parquet":
        return kind, plan_parquet(fs, files, TASK_ROWS), parquet_file(fs, files[0]).schema_arrow
    parts: list[PlannedShard] = []
    schema, offset = None, 0
    for file in files:  # text: counted once here, so every task knows its first row
        rows = 0
        for batch in _read_text(fs, file, kind):
            schema = schema or batch.schema
            rows += batch.num_rows
        parts.append(PlannedShard(len(parts), file, (), offset, rows))
        offset += rows
    if schema is None:
        raise InputError(f"{url} has no rows to read a schema from")
    return kind, parts, schema


def _read_text(fs: Any, file: str, kind: str) -> Iterator[pa.RecordBatch]:
    return guarded(remote_text(fs, [file], "csv" if kind == "csv" else "jsonl"), file, kind)


def read_part(
    url: str, kind: str, part: PlannedShard, row_ids: bool, schema: pa.Schema
) -> Iterator[pa.RecordBatch]:
    """The batches of one task, in the ``schema`` Spark was promised (text files may infer other types)."""
    fs, _ = filesystem(url)
    if kind == "parquet":
        batches = read_planned(fs, part, 65_536, use_threads=False)
    else:
        batches = _read_text(fs, part.file, kind)
    position = part.offset
    for batch in batches:
        if batch.schema != schema:
            try:
                batch = batch.cast(schema)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError, ValueError) as exc:
                raise InputError(
                    f"{part.file} does not have the columns of the first input file ({schema}): {exc}; "
                    "give every file the same columns, or pass --input-format and clean the input"
                ) from None
        if row_ids:
            ids = pa.array(range(position, position + batch.num_rows), pa.int64())
            batch = pa.RecordBatch.from_arrays([*batch.columns, ids], names=[*batch.schema.names, ROW_ID])
        position += batch.num_rows
        yield batch


# -- writing (executors, then the driver's commit) --------------------------------------------


def write_task(
    url: str, fmt: str, job: str, task: int, partition_by: Sequence[str], batches: Iterator[pa.RecordBatch]
) -> list[str]:
    """Write one task's batches; returns the files written (one per partition value)."""
    import pyarrow.compute as pc

    fs, root = filesystem(url)
    writers: dict[str, Any] = {}
    handles: dict[str, Any] = {}
    try:
        for batch in batches:
            if not partition_by:
                groups = [("", batch)]
            else:
                table = pa.Table.from_batches([batch])
                keys = table.select(list(partition_by)).group_by(list(partition_by)).aggregate([])
                groups = []
                for key in keys.to_pylist():
                    mask = None
                    for column, value in key.items():
                        equal = pc.is_null(table[column]) if value is None else pc.equal(table[column], value)
                        mask = equal if mask is None else pc.and_(mask, equal)
                    chosen = table.filter(mask).drop_columns(list(partition_by))
                    folder = "/".join(f"{c}={_partition_value(v)}" for c, v in key.items())
                    groups += [(folder, b) for b in chosen.to_batches()]
            for folder, piece in groups:
                if folder not in writers:
                    path = f"{root.rstrip('/')}/{folder + '/' if folder else ''}part-{task:05d}-{job}.{fmt}"
                    fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
                    handles[folder] = fs.open(path, "wb")
                    writers[folder] = _writer(fmt, handles[folder], piece.schema)
                writers[folder].write_batch(piece)
        for folder in writers:
            writers[folder].close()
            handles[folder].close()  # an object store puts the object now, whole
    except BaseException:
        for handle in handles.values():
            handle.close()
        raise
    return list(writers)


def _partition_value(value: Any) -> str:
    from urllib.parse import quote

    return "__HIVE_DEFAULT_PARTITION__" if value is None else quote(str(value), safe="")


def _writer(fmt: str, handle: Any, schema: pa.Schema) -> Any:
    if fmt == "parquet":
        import pyarrow.parquet as pq

        return pq.ParquetWriter(handle, schema)
    import pyarrow.csv as pacsv

    return pacsv.CSVWriter(handle, schema)


def commit(url: str, job: str, folders: set[str], partitioned: bool) -> None:
    """Remove earlier runs' files: all of them, or (``partitioned``) those in the folders written now."""
    fs, root = filesystem(url)
    root = root.rstrip("/")
    fs.invalidate_cache()
    if not fs.exists(root):
        return
    scope = [f"{root}/{f}" for f in folders if f] if partitioned else [root]
    for folder in scope:
        for path in fs.find(folder):
            name = path.rsplit("/", 1)[-1]
            if name.startswith("part-") and f"-{job}." not in name:
                fs.rm(path)


def abort(url: str, job: str) -> None:
    fs, root = filesystem(url)
    fs.invalidate_cache()
    if fs.exists(root):
        for path in fs.find(root):
            if f"-{job}." in path.rsplit("/", 1)[-1]:
                fs.rm(path)


# -- the Spark data source -----------------------------------------------------------------------


def _source_class() -> type:
    """The ``DataSource`` class (built here: pyspark is imported only when Spark is used)."""
    from pyspark.sql.datasource import (
        DataSource,
        DataSourceArrowWriter,
        DataSourceReader,
        InputPartition,
        WriterCommitMessage,
    )

    class Reader(DataSourceReader):  # type: ignore[misc]
        def __init__(self, url: str, kind: str, parts: list[PlannedShard], row_ids: bool, schema: pa.Schema):
            self.url, self.kind, self.parts, self.row_ids, self.schema = url, kind, parts, row_ids, schema

        def partitions(self) -> list[InputPartition]:
            return [InputPartition(p) for p in self.parts]

        def read(self, partition: InputPartition) -> Iterator[pa.RecordBatch]:
            return read_part(self.url, self.kind, partition.value, self.row_ids, self.schema)

    @dataclass
    class Written(WriterCommitMessage):  # type: ignore[misc]
        folders: list[str]

    class Writer(DataSourceArrowWriter):  # type: ignore[misc]
        def __init__(self, url: str, fmt: str, partition_by: list[str]) -> None:
            self.url, self.fmt, self.partition_by = url, fmt, partition_by
            self.job = uuid.uuid4().hex[:12]

        def write(self, iterator: Iterator[pa.RecordBatch]) -> Written:
            from pyspark import TaskContext

            context = TaskContext.get()
            task = context.partitionId() if context is not None else 0
            return Written(write_task(self.url, self.fmt, self.job, task, self.partition_by, iterator))

        def commit(self, messages: list[WriterCommitMessage | None]) -> None:
            folders = {f for m in messages for f in getattr(m, "folders", None) or ()}
            commit(self.url, self.job, folders, bool(self.partition_by))

        def abort(self, messages: list[WriterCommitMessage | None]) -> None:
            abort(self.url, self.job)

    class FilesSource(DataSource):  # type: ignore[misc]
        @classmethod
        def name(cls) -> str:
            return NAME

        def schema(self) -> Any:  # only reached without read()'s schema
            raise InputError(f"read {NAME} sources with kappa_batch.spark_files.read(), which plans them")

        def reader(self, schema: Any) -> Reader:
            kind, parts, row_ids, arrow = decode_plan(self.options["plan"])
            return Reader(self.options["path"], kind, parts, row_ids, arrow)

        def writer(self, schema: Any, overwrite: bool) -> Writer:
            return Writer(
                self.options["path"],
                self.options.get("format", "parquet"),
                json.loads(self.options["partitionBy"]),
            )

    return FilesSource
