"""Inputs and outputs of scoring runs: files, folders, globs or fsspec URLs, read as Arrow batches."""

from __future__ import annotations

import functools
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from kappa.errors import InputError

FORMATS = {
    ".parquet": "parquet",
    ".pq": "parquet",
    ".csv": "csv",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "json",
}
OUTPUT_FORMATS = ("parquet", "csv", "jsonl")


@dataclass(frozen=True)
class PlannedShard:
    """Rows of one Parquet file, by row group, that a worker reads for itself."""

    index: int
    file: str
    row_groups: tuple[int, ...]
    offset: int  # position of the shard's first row in the whole input
    rows: int


@dataclass
class InputSource:
    """A stream of record batches and what is known about it up front.

    Parquet inputs also carry a ``plan``: shards of whole row groups, so that
    workers read their own rows and no data passes through the parent process.
    """

    batches: Iterator[pa.RecordBatch]
    total_rows: int | None
    description: str
    files: list[str]
    fs: Any = None
    plan: list[PlannedShard] | None = None


def filesystem(url: str) -> tuple[Any, str]:
    from kappa.repository.files import filesystem as fs_for

    return fs_for(url)


def format_of(path: str, explicit: str | None = None) -> str:
    if explicit:
        if explicit not in {*FORMATS.values()}:
            raise InputError(f"unknown input format {explicit!r}; use one of {sorted(set(FORMATS.values()))}")
        return explicit
    for suffix, name in FORMATS.items():
        if path.lower().endswith(suffix):
            return name
    raise InputError(
        f"cannot tell the format of {path!r} from its name; name it .parquet, .csv, .jsonl or .json, "
        "or pass --input-format"
    )


def list_files(spec: str, suffixes: tuple[str, ...] | None = None) -> tuple[Any, list[str]]:
    """The files a path, folder, glob or URL names, sorted (so every run reads them in one order)."""
    fs, path = filesystem(spec)
    if any(ch in path for ch in "*?["):
        found = [p for p in fs.glob(path) if fs.isfile(p)]
    elif fs.isdir(path):
        found = [p for p in fs.find(path) if not _hidden(p[len(path) :])]
    elif fs.exists(path):
        found = [path]
    else:
        raise InputError(f"cannot read input {spec!r}: no such file or folder")
    if suffixes is not None:
        found = [p for p in found if p.lower().endswith(suffixes)]
    if not found:
        raise InputError(f"no input files match {spec!r}")
    return fs, sorted(found)


def _hidden(relative: str) -> bool:
    return any(part.startswith((".", "_")) for part in relative.strip("/").split("/"))


def inline_source(text: str, adapter: Any) -> InputSource:
    try:
        payload = json.loads(text)
    except ValueError as exc:
        raise InputError(f"--input is not valid JSON: {exc}") from None
    batch = adapter.from_json(payload)  # the decoder HTTP requests go through
    return InputSource(iter([batch]), batch.num_rows, "inline input", [])


def _kind_of_name(path: str) -> str | None:
    lower = path.lower()
    return next((name for suffix, name in FORMATS.items() if lower.endswith(suffix)), None)


def input_kind(spec: str, fmt: str | None = None) -> str:
    """The format ``kappa run`` reads ``spec`` as (``parquet``, ``csv``, ...); raises InputError as the
    run itself would (no such input, mixed formats)."""
    _, files = list_files(spec)
    return _pick_files(spec, files, fmt)[0]


def _pick_files(spec: str, files: list[str], fmt: str | None) -> tuple[str, list[str]]:
    """The format to read and the files of that format; a folder of several formats needs ``fmt``."""
    if fmt:
        kind = format_of("", fmt)
        return kind, [f for f in files if _kind_of_name(f) in (kind, None)]
    kinds: dict[str, int] = {}
    for file in files:
        kind_of = _kind_of_name(file)
        if kind_of is not None:
            kinds[kind_of] = kinds.get(kind_of, 0) + 1
    if len(kinds) > 1:
        found = ", ".join(f"{count} {kind}" for kind, count in sorted(kinds.items()))
        raise InputError(
            f"input {spec!r} mixes file formats ({found}); pass --input-format "
            f"{'|'.join(sorted(kinds))} to read one of them, or point at one format's files (a glob)"
        )
    if not kinds:
        format_of(files[0])  # raises: says what to do when no name fits
    kind = next(iter(kinds))
    return kind, [f for f in files if _kind_of_name(f) == kind]


def file_source(
    spec: str,
    fmt: str | None,
    batch_size: int,
    declared: pa.Schema | None = None,
    id_column: str | None = None,
    json_text: bool = False,
) -> InputSource:
    """Stream a tabular input (Parquet, CSV, JSON Lines, or a JSON array) batch by batch.

    ``declared`` is the API's input schema, when it declares one: CSV columns are read as
    those types (see :mod:`kappa_batch.csvread`). With ``json_text`` (a ``JsonInput`` API)
    JSON Lines and JSON array inputs are read as the JSON text of each value, so the API
    gets every object exactly as written (no keys added, no types unified across rows).
    """
    import pyarrow.dataset as ds

    fs, files = list_files(spec)
    kind, files = _pick_files(spec, files, fmt)
    if not files:
        raise InputError(f"no {kind} files in {spec!r}")
    if json_text and kind in ("json", "jsonl"):
        return _json_text_source(fs, files, spec, kind, batch_size, id_column)
    if kind == "json":
        return _json_array_source(fs, files, spec)
    if kind == "parquet":
        plan = plan_parquet(fs, files, batch_size)
        total = sum(shard.rows for shard in plan)
        description = f"{len(files)} parquet file(s) from {spec}"
        return InputSource(iter(()), total, description, files, fs=fs, plan=plan)
    description = f"{len(files)} {kind} file(s) from {spec}"
    if kind == "csv":
        return InputSource(
            guarded(_csv_batches(fs, files, declared, id_column), spec, kind), None, description, files, fs
        )
    if not is_local_fs(fs):
        return InputSource(guarded(remote_text(fs, files, kind), spec, kind), None, description, files, fs)
    try:
        dataset = ds.dataset(files, format="json")
        # Bounded readahead keeps memory proportional to the batch size, not the input.
        scanner = dataset.scanner(
            batch_size=batch_size, use_threads=True, batch_readahead=2, fragment_readahead=1
        )
        batches = scanner.to_batches()
    except (pa.ArrowInvalid, OSError) as exc:
        raise InputError(f"cannot read input {spec!r} as {kind}: {exc}") from None
    return InputSource(guarded(batches, spec, kind), None, description, files, fs)


def _csv_batches(
    fs: Any, files: list[str], declared: pa.Schema | None, id_column: str | None
) -> Iterator[pa.RecordBatch]:
    from kappa_batch.csvread import read_csv

    local = is_local_fs(fs)
    keep = frozenset([id_column] if id_column else [])
    for file in files:
        # Arrow opens a local file itself (never a Python file object: see parquet_file)
        opener = (
            functools.partial(str, file)
            if local
            else functools.partial(pa.BufferReader, fetch_into_arrow(fs, file))
        )
        yield from read_csv(opener, file, declared, use_threads=True, keep=keep)


def fetch_into_arrow(fs: Any, file: str) -> pa.Buffer:
    """A remote file's bytes in Arrow-allocated memory."""
    size = int(fs.size(file))
    data = pa.allocate_buffer(size)
    with fs.open(file, "rb") as handle:
        view, done = memoryview(data), 0
        while done < size:
            read = handle.readinto(view[done:])
            if not read:
                raise InputError(f"{file} ended after {done} of {size} bytes; was it changed while read?")
            done += read
    return data


def remote_text(fs: Any, files: list[str], kind: str) -> Iterator[pa.RecordBatch]:
    """Remote CSV / JSON Lines, one file at a time, fetched into Arrow's own memory.

    Arrow's text readers read ahead on their own threads; given a Python file object they
    would own Python objects on those threads (see :func:`parquet_file`), so each file is
    fetched first (one file in memory at a time) and parsed from memory with all threads.
    """
    import pyarrow.csv as pacsv
    import pyarrow.json as pajson

    for file in files:
        data = fetch_into_arrow(fs, file)
        reader = pacsv.open_csv if kind == "csv" else pajson.open_json
        yield from reader(pa.BufferReader(data))


def fingerprint(fs: Any, files: list[str]) -> list[dict[str, Any]]:
    """Each input file's size and modification time (or ETag in an object store): what ``--resume``
    compares to know that the input is still the one the run started on."""
    prints = []
    for file in files:
        info = fs.info(file)
        stamp = info.get("ETag") or info.get("etag") or info.get("mtime") or info.get("LastModified")
        if stamp is None:
            stamp = info.get("created")
        prints.append({"path": file, "size": info.get("size"), "stamp": str(stamp)})
    return prints


def is_local_fs(fs: Any) -> bool:
    """An fsspec local file system, whose paths Arrow can open itself."""
    return type(fs).__name__ == "LocalFileSystem"


def parquet_file(fs: Any, file: str) -> Any:
    """A ``ParquetFile`` that Arrow reads itself where it can (local files, memory-mapped).

    A remote file is read through its fsspec file object: such a file must be read on the
    calling thread (``use_threads=False``) and never pre-buffered, because Arrow's reader
    threads would otherwise own buffers that hold Python objects, and one released by such a
    thread while the interpreter exits aborts the process ("terminate called without an
    active exception", apache/arrow#34314); this is what crashed ``kappa run`` at exit.
    """
    import pyarrow.parquet as pq

    if is_local_fs(fs):
        return pq.ParquetFile(file, memory_map=True)
    return pq.ParquetFile(fs.open(file, "rb"), pre_buffer=False)


def _open_parquet(fs: Any, file: str) -> Any:
    try:
        return parquet_file(fs, file)
    except (pa.ArrowInvalid, OSError) as exc:
        raise InputError(f"cannot read input {file!r} as parquet: {exc}") from None


def plan_parquet(fs: Any, files: list[str], batch_size: int) -> list[PlannedShard]:
    """Whole row groups, gathered until a shard holds at least ``batch_size`` rows (never across files)."""
    plan: list[PlannedShard] = []
    offset = 0
    for file in files:
        metadata = _open_parquet(fs, file).metadata
        groups: list[int] = []
        rows = 0
        for group in range(metadata.num_row_groups):
            groups.append(group)
            rows += metadata.row_group(group).num_rows
            if rows >= batch_size or group == metadata.num_row_groups - 1:
                plan.append(PlannedShard(len(plan), file, tuple(groups), offset, rows))
                offset += rows
                groups, rows = [], 0
    return plan


def read_planned(
    fs: Any, shard: PlannedShard, batch_size: int, use_threads: bool = True
) -> Iterator[pa.RecordBatch]:
    """The batches of one planned shard, at most ``batch_size`` rows each.

    Worker processes pass ``use_threads=False``: together they already keep every core busy.
    """
    parquet = _open_parquet(fs, shard.file)
    groups = list(shard.row_groups)
    threads = use_threads and is_local_fs(fs)  # see parquet_file
    batches = parquet.iter_batches(batch_size=batch_size, row_groups=groups, use_threads=threads)
    return guarded(batches, shard.file, "parquet")


def guarded(batches: Iterator[pa.RecordBatch], spec: str, kind: str) -> Iterator[pa.RecordBatch]:
    try:
        yield from batches
    except (pa.ArrowException, OSError) as exc:
        raise InputError(f"cannot read input {spec!r} as {kind}: {exc}") from None
    except UnicodeDecodeError as exc:
        raise InputError(
            f"cannot read input {spec!r} as {kind}: it is not UTF-8 text ({exc.reason}); save it as UTF-8"
        ) from None


def _json_array(fs: Any, file: str) -> list[Any]:
    """The values of a file holding one JSON array."""
    with fs.open(file, "rb") as handle:
        try:
            records = json.load(handle)
        except ValueError as exc:
            raise InputError(f"{file} is not valid JSON: {exc}") from None
    if not isinstance(records, list):
        raise InputError(f"{file} must hold a JSON array of records (or use .jsonl)")
    return records


def _json_array_source(fs: Any, files: list[str], spec: str) -> InputSource:
    def read() -> Iterator[pa.RecordBatch]:
        for file in files:
            yield from pa.Table.from_pylist(_json_array(fs, file)).to_batches()

    return InputSource(read(), None, f"{len(files)} json file(s) from {spec}", files, fs)


def _json_text_source(
    fs: Any, files: list[str], spec: str, kind: str, batch_size: int, id_column: str | None = None
) -> InputSource:
    """One string column ``json``: each JSON Lines line (or JSON array item) as written; with an
    ``id_column``, that field is taken out of each object into a column of its own."""
    from kappa.adapters._json import dumps
    from kappa.adapters.json_input import COLUMN

    def texts() -> Iterator[str]:
        for file in files:
            if kind == "json":
                yield from (dumps(record) for record in _json_array(fs, file))
                continue
            with fs.open(file, "rb") as handle:
                for number, line in enumerate(handle, 1):
                    text = line.strip()
                    if text:
                        try:
                            yield text.decode("utf-8")
                        except UnicodeDecodeError:
                            raise InputError(f"{file} line {number} is not UTF-8 text") from None

    def batch_of(chunk: list[str]) -> pa.RecordBatch:
        if id_column is None:
            return pa.RecordBatch.from_arrays([pa.array(chunk, pa.string())], names=[COLUMN])
        ids, rest = [], []
        for text in chunk:
            try:
                value = json.loads(text)
            except ValueError as exc:
                raise InputError(f"a value in {spec!r} is not valid JSON ({exc}): {text[:80]}") from None
            if not isinstance(value, dict) or id_column not in value:
                raise InputError(f"a value in {spec!r} has no {id_column!r} field (--id-column): {text[:80]}")
            ids.append(value.pop(id_column))
            rest.append(dumps(value))
        return pa.RecordBatch.from_arrays(
            [pa.array(ids), pa.array(rest, pa.string())], names=[id_column, COLUMN]
        )

    def read() -> Iterator[pa.RecordBatch]:
        chunk: list[str] = []
        for text in texts():
            chunk.append(text)
            if len(chunk) == batch_size:
                yield batch_of(chunk)
                chunk = []
        if chunk:
            yield batch_of(chunk)

    return InputSource(read(), None, f"{len(files)} {kind} file(s) from {spec}", files, fs)


def binary_source(spec: str, column: str, batch_size: int) -> InputSource:
    """Every file under a folder (or glob) as one row: ``path`` and the file's bytes in ``column``."""
    fs, files = list_files(spec)
    base = spec.split("://", 1)[-1].rstrip("/") if not any(ch in spec for ch in "*?[") else ""

    def read() -> Iterator[pa.RecordBatch]:
        for start in range(0, len(files), batch_size):
            chunk = files[start : start + batch_size]
            data = [fs.cat_file(f) for f in chunk]
            names = [f[len(base) :].lstrip("/") if base and f.startswith(base) else f for f in chunk]
            yield pa.RecordBatch.from_arrays(
                [pa.array(names, pa.string()), pa.array(data, pa.binary())], names=["path", column]
            )

    return InputSource(read(), len(files), f"{len(files)} file(s) from {spec}", files, fs)


def _flatten_for_text(table: pa.Table) -> pa.Table:
    """CSV cannot hold lists or structs: write those columns as JSON text."""
    from kappa.adapters._json import dumps

    columns = []
    for field, column in zip(table.schema, table.columns, strict=True):
        if pa.types.is_nested(field.type):
            column = pa.array([None if v is None else dumps(v) for v in column.to_pylist()], pa.string())
        columns.append(column)
    return pa.table(columns, names=table.column_names)


class TableWriter:
    """Streams tables into one file: Parquet, CSV (nested columns as JSON) or JSON Lines."""

    def __init__(self, fs: Any, path: str, fmt: str, schema: pa.Schema) -> None:
        if fmt not in OUTPUT_FORMATS:
            raise InputError(f"unknown output format {fmt!r}; use one of {OUTPUT_FORMATS}")
        self.fmt = fmt
        self.schema = schema
        self._handle = fs.open(path, "wb")
        self._writer: Any = None
        if fmt == "parquet":
            import pyarrow.parquet as pq

            self._writer = pq.ParquetWriter(self._handle, schema, use_dictionary=_dictionary_columns(schema))
        elif fmt == "csv":
            import pyarrow.csv as pacsv

            text_schema = _flatten_for_text(schema.empty_table()).schema
            self._writer = pacsv.CSVWriter(self._handle, text_schema)

    def write(self, table: pa.Table) -> None:
        if self.fmt == "parquet":
            self._writer.write_table(table)
        elif self.fmt == "csv":
            self._writer.write_table(_flatten_for_text(table))
        else:
            from kappa.adapters._json import dumps

            self._handle.write(b"".join(dumps(r).encode() + b"\n" for r in table.to_pylist()))

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
        self._handle.close()


def _dictionary_columns(schema: pa.Schema) -> list[str] | bool:
    """Columns worth dictionary encoding (Parquet leaf paths): all but the row id (``_row``), whose
    values are all different: building its dictionary, then falling back to plain, made writing
    an output shard 4x slower (bench/RESULTS.md, issue 22)."""
    from kappa_batch.scoring import ROW_ID

    if ROW_ID not in schema.names:
        return True
    return [path for field in schema if field.name != ROW_ID for path in _leaf_paths(field.name, field.type)]


def _leaf_paths(prefix: str, kind: pa.DataType) -> list[str]:
    """A column's leaves as Parquet names them (``probs.list.element``, ``s.x``, ``m.key_value.key``)."""
    if pa.types.is_struct(kind):
        return [
            p
            for i in range(kind.num_fields)
            for p in _leaf_paths(f"{prefix}.{kind.field(i).name}", kind.field(i).type)
        ]
    if pa.types.is_map(kind):
        return _leaf_paths(f"{prefix}.key_value.key", kind.key_type) + _leaf_paths(
            f"{prefix}.key_value.value", kind.item_type
        )
    if pa.types.is_list(kind) or pa.types.is_large_list(kind) or pa.types.is_fixed_size_list(kind):
        return _leaf_paths(f"{prefix}.list.element", kind.value_type)
    return [prefix]


def write_table(table: pa.Table, fs: Any, path: str, fmt: str) -> None:
    """Write one table to ``path`` in ``fmt`` (the caller makes it atomic)."""
    writer = TableWriter(fs, path, fmt, table.schema)
    try:
        writer.write(table)
    finally:
        writer.close()


def read_parquet(fs: Any, path: str) -> pa.Table:
    parquet = parquet_file(fs, path)
    try:
        return parquet.read(use_threads=is_local_fs(fs))  # a remote file on this thread: see parquet_file
    finally:
        parquet.close(force=True)  # also the fsspec file object it was given


def parquet_schema(fs: Any, path: str) -> pa.Schema:
    import pyarrow.parquet as pq

    with fs.open(path, "rb") as handle:
        return pq.read_schema(handle)
