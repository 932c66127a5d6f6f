"""Output written as shards plus a manifest committed last.

Directory mode (``--output-file out/``)::

    out/part-00000.parquet ...       one shard per input batch: the rows that got a prediction
    out/_kappa/run.json              what this output is being made from (written first)
    out/_kappa/errors-00000.parquet  the rows of shard 0 that failed (written before the shard)
    out/_kappa/manifest.json         shards and totals, written when every shard is done
    out/_SUCCESS                     the run met its error budget

Single-file mode (``--output-file preds.csv``) keeps the same layout in
``preds.csv.kappa-parts/`` while it runs and, at commit, joins the shards into
``preds.csv`` (failed rows into ``preds.errors.parquet``), keeps the commit record in
``.preds.csv.kappa.json`` beside it, and removes that folder.

A shard file appears in one atomic rename, after its error shard, so after a crash
every shard is either complete or absent: ``--resume`` skips the complete ones and
no input row is lost or written twice.
"""

from __future__ import annotations

import json
import logging
import re
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from kappa.adapters.schema import fit
from kappa.errors import InputError
from kappa_batch.io import OUTPUT_FORMATS, TableWriter, filesystem, parquet_schema, read_parquet, write_table

log = logging.getLogger(__name__)

STATE_DIR = "_kappa"
RUN_FILE = "run.json"
MANIFEST_FILE = "manifest.json"
SUCCESS_FILE = "_SUCCESS"
_PART = re.compile(r"part-(\d{5,})\.(parquet|csv|jsonl)$")
# What must match for --resume to continue an output.
RESUME_KEYS = (
    "bundle_digest",
    "api",
    "input",
    "input_files",
    "batch_size",
    "format",
    "id_column",
    "error_columns",
)


@dataclass(frozen=True)
class OutputSpec:
    url: str
    fmt: str
    single_file: bool
    shard_dir: str
    errors_url: str

    @classmethod
    def parse(cls, url: str, fmt: str | None, errors_url: str | None) -> OutputSpec:
        stripped = url.rstrip("/")
        suffix = stripped.rsplit(".", 1)[-1].lower() if "." in stripped.rsplit("/", 1)[-1] else ""
        single = not url.endswith("/") and suffix in OUTPUT_FORMATS
        chosen = fmt or (suffix if single else "parquet")
        if chosen not in OUTPUT_FORMATS:
            raise InputError(f"unknown output format {chosen!r}; use one of {OUTPUT_FORMATS}")
        if single and fmt and fmt != suffix:
            raise InputError(f"--format {fmt} does not match the output file name {url!r}")
        shard_dir = f"{stripped}.kappa-parts" if single else stripped
        errors = errors_url or (
            f"{stripped.rsplit('.', 1)[0]}.errors.parquet" if single else f"{stripped}/_errors.parquet"
        )
        return cls(url=stripped, fmt=chosen, single_file=single, shard_dir=shard_dir, errors_url=errors)


def write_atomically(fs: Any, path: str, write: Callable[[str], None]) -> None:
    """``write(temporary)`` to a hidden name beside ``path``, then move it into place: readers (a
    resumed run, a folder listed as input) see the whole file or none of it."""
    folder, name = path.rsplit("/", 1)
    temporary = f"{folder}/.tmp-{secrets.token_hex(4)}-{name}"
    write(temporary)
    fs.mv(temporary, path)


def put_table(table: pa.Table, fs: Any, path: str, fmt: str) -> None:
    """One shard: ``table`` written whole to ``path`` in ``fmt`` (``kappa run``'s output shards and
    error shards, the prediction log's shards)."""
    write_atomically(fs, path, lambda tmp: write_table(table, fs, tmp, fmt))


class ShardedOutput:
    def __init__(self, spec: OutputSpec) -> None:
        self.spec = spec
        self.fs, self.root = filesystem(spec.shard_dir)
        self.root = self.root.rstrip("/")
        self.state = f"{self.root}/{STATE_DIR}"

    # -- paths ------------------------------------------------------------------
    @property
    def shard_format(self) -> str:
        """Shards of a single-file output are Parquet; the join writes the requested format."""
        return "parquet" if self.spec.single_file else self.spec.fmt

    def shard_path(self, index: int) -> str:
        return f"{self.root}/part-{index:05d}.{self.shard_format}"

    def error_path(self, index: int) -> str:
        return f"{self.state}/errors-{index:05d}.parquet"

    # -- lifecycle ----------------------------------------------------------------
    def exists(self) -> bool:
        target_fs, target = filesystem(self.spec.url)
        return bool(self.fs.exists(self.root) or target_fs.exists(target))

    @property
    def record(self) -> str:
        """Where a complete single-file output keeps its commit record: a hidden file beside it."""
        folder, name = _split(filesystem(self.spec.url)[1])
        return f"{folder}/.{name}.kappa.json"

    def committed(self) -> dict[str, Any] | None:
        path = f"{self.state}/{MANIFEST_FILE}"
        if self.fs.exists(path):
            manifest: dict[str, Any] = json.loads(self.fs.cat_file(path))
            return manifest
        if self.spec.single_file and self.fs.exists(self.record) and not self.fs.exists(self.root):
            kept: dict[str, Any] = json.loads(self.fs.cat_file(self.record))
            return kept
        return None

    def prepare(self, run: Mapping[str, Any], resume: bool, overwrite: bool) -> set[int]:
        """Start (or continue) the output; returns the shards already complete."""
        self.fs.invalidate_cache()
        if self.exists():
            if overwrite:
                self.remove()
            elif resume:
                return self._resume(run)
            else:
                raise InputError(
                    f"output {self.spec.url!r} already exists; pass --overwrite to replace it "
                    "or --resume to finish an interrupted run"
                )
        self.check_writable()
        self.fs.makedirs(self.state, exist_ok=True)
        self._put_json(f"{self.state}/{RUN_FILE}", dict(run))
        return set()

    def check_writable(self) -> None:
        """Fail before any scoring if a place the run writes to cannot be written."""
        targets = {"--output-file": self.spec.shard_dir, "--errors-file": self.spec.errors_url}
        if self.spec.single_file:
            targets["--output-file"] = self.spec.url
        for option, url in targets.items():
            fs, path = filesystem(url)
            folder = path if url == self.spec.shard_dir else _split(path)[0]
            probe = f"{folder}/.tmp-{secrets.token_hex(4)}-probe"
            existed = fs.exists(folder)
            try:
                fs.makedirs(folder, exist_ok=True)
                fs.pipe_file(probe, b"")
                fs.rm(probe)
                if not existed and fs.isdir(folder):  # leave no trace: the run creates it again
                    fs.rmdir(folder)
            except OSError as exc:
                reason = exc.strerror or type(exc).__name__
                raise InputError(
                    f"cannot write {option} {url!r}: {reason} ({folder}); pick a place you can write to"
                ) from None

    def _resume(self, run: Mapping[str, Any]) -> set[int]:
        path = f"{self.state}/{RUN_FILE}"
        finished = self.committed() if not self.fs.exists(path) else None
        if finished is not None and "run" in finished:  # a complete single file: its record
            self._same_run(finished["run"], run)
            return set()
        if not self.fs.exists(path):
            raise InputError(
                f"cannot resume into {self.spec.url!r}: it was not written by `kappa run`; "
                "use --overwrite or another output"
            )
        self._same_run(json.loads(self.fs.cat_file(path)), run)
        if self.committed() is not None:
            return set()
        self._remove_leftovers()
        return self._done_shards()

    def _same_run(self, previous: Mapping[str, Any], run: Mapping[str, Any]) -> None:
        """Refuse to resume with other settings or a changed input."""
        changed = [k for k in RESUME_KEYS if previous.get(k) != run.get(k)]
        if "input_files" not in previous:
            raise InputError(
                f"cannot resume {self.spec.url!r}: it was started by an older Kappa that did not record "
                "its input files, so a changed input could not be told apart; use --overwrite"
            )
        if "input_files" in changed:
            raise InputError(
                f"cannot resume {self.spec.url!r}: the input changed since the run started "
                f"({_file_changes(previous.get('input_files') or [], run.get('input_files') or [])}); "
                "resuming would mix rows of the old and the new input. Use --overwrite to start over"
            )
        if changed:
            details = ", ".join(f"{k}: {previous.get(k)!r} -> {run.get(k)!r}" for k in changed)
            raise InputError(
                f"cannot resume {self.spec.url!r}: it was started with other settings ({details}); "
                "use --overwrite to start over"
            )

    def _done_shards(self) -> set[int]:
        done = set()
        for name in self.fs.ls(self.root, detail=False):
            match = _PART.search(name.rsplit("/", 1)[-1])
            if (
                match
                and match.group(2) == self.shard_format
                and self.fs.exists(self.error_path(int(match[1])))
            ):
                done.add(int(match.group(1)))
        log.info("resuming %s: %d shard(s) already complete", self.spec.url, len(done))
        return done

    def _remove_leftovers(self) -> None:
        """Temporary files a killed run left: in the shard folder, and beside joined outputs."""
        for leftover in self.fs.glob(f"{self.root}/.tmp-*") + self.fs.glob(f"{self.state}/.tmp-*"):
            self.fs.rm(leftover)
        for url in {self.spec.url, self.spec.errors_url} if self.spec.single_file else {self.spec.errors_url}:
            fs, path = filesystem(url)
            folder, name = _split(path)
            for leftover in fs.glob(f"{folder}/.tmp-*-{name}"):
                fs.rm(leftover)

    def remove(self) -> None:
        self._remove_leftovers()
        if self.spec.single_file and self.fs.exists(self.record):
            self.fs.rm(self.record)
        for url in {self.spec.shard_dir, self.spec.url}:
            fs, path = filesystem(url)
            if fs.exists(path):
                fs.rm(path, recursive=True)
        fs, path = filesystem(self.spec.errors_url)
        if fs.exists(path):
            fs.rm(path)

    # -- writing ------------------------------------------------------------------
    def _put_json(self, path: str, data: Mapping[str, Any]) -> None:
        text = json.dumps(data, indent=2, sort_keys=True, default=str).encode()
        write_atomically(self.fs, path, lambda tmp: self.fs.pipe_file(tmp, text))

    def write_shard(self, index: int, outputs: pa.Table, errors: pa.Table) -> None:
        """Errors first, then the shard: a shard file on disk means the whole shard is done."""
        put_table(errors, self.fs, self.error_path(index), "parquet")
        put_table(outputs, self.fs, self.shard_path(index), self.shard_format)

    def commit(self, shards: int, report: Mapping[str, Any], success: bool) -> None:
        """Join the error shards (and, in single-file mode, the shards), then write the manifest."""
        self._join([self.error_path(i) for i in range(shards)], self.spec.errors_url)
        if self.spec.single_file:
            self._join([self.shard_path(i) for i in range(shards)], self.spec.url)
        manifest = {
            "shards": shards,
            "format": self.spec.fmt,
            "output": self.spec.url,
            "errors": self.spec.errors_url,
            "success": success,
            "report": dict(report),
        }
        self._put_json(f"{self.state}/{MANIFEST_FILE}", manifest)
        if self.spec.single_file:  # the joined files hold it all: no parts folder is left behind
            started = json.loads(self.fs.cat_file(f"{self.state}/{RUN_FILE}"))
            self._put_json(self.record, {**manifest, "run": started})
            for index in range(shards):
                self.fs.rm([self.shard_path(index), self.error_path(index)])
            self.fs.rm(self.root, recursive=True)
        elif success:
            self.fs.pipe_file(f"{self.root}/{SUCCESS_FILE}", b"")

    def _join(self, parts: list[str], target_url: str) -> None:
        """Stream Parquet parts into one file, one part in memory at a time."""
        fs, target = filesystem(target_url)
        schemas = [parquet_schema(self.fs, p) for p in parts]
        schema = pa.unify_schemas(schemas, promote_options="permissive") if schemas else pa.schema([])
        folder = _split(target)[0]
        fs.makedirs(folder, exist_ok=True)
        temporary = f"{folder}/.tmp-{secrets.token_hex(4)}-{target.rsplit('/', 1)[-1]}"
        writer = TableWriter(fs, temporary, _format_for(target), schema)
        try:
            for part in parts:
                writer.write(fit(read_parquet(self.fs, part), schema))
        finally:
            writer.close()
        fs.mv(temporary, target)


def _split(path: str) -> tuple[str, str]:
    """A file system path's folder (``.`` when it has none) and name."""
    folder, sep, name = path.rpartition("/")
    return (folder if sep else "."), name


def _file_changes(before: list[dict[str, Any]], now: list[dict[str, Any]]) -> str:
    old = {f["path"]: f for f in before}
    new = {f["path"]: f for f in now}
    changes = [f"{p} added" for p in sorted(new.keys() - old.keys())]
    changes += [f"{p} removed" for p in sorted(old.keys() - new.keys())]
    for path in sorted(old.keys() & new.keys()):
        if old[path] != new[path]:
            changes.append(
                f"{path}: {old[path].get('size')} bytes at {old[path].get('stamp')} -> "
                f"{new[path].get('size')} bytes at {new[path].get('stamp')}"
            )
    return "; ".join(changes[:3]) + (f" and {len(changes) - 3} more" if len(changes) > 3 else "")


def _format_for(url: str) -> str:
    suffix = url.rsplit(".", 1)[-1].lower()
    return suffix if suffix in OUTPUT_FORMATS else "parquet"
