"""Dask: score Dask DataFrames partition by partition through Arrow and the batch runner.

:func:`score` maps every partition of a Dask DataFrame through the API. The model is
never part of the task graph: tasks carry a small :class:`~kappa_batch.remote.BundleHandle`
and each worker process loads the bundle once (a cache keyed by its digest). With a
``distributed`` client, a local bundle is shipped to the workers once, by a worker
plugin that unpacks it in each worker's local directory (workers started later get it
too); a bundle URL (``s3://...``) is read by the workers themselves.

Outputs use Arrow-backed pandas dtypes (``pandas.ArrowDtype``), so a failed row's null
prediction never changes a column's type between partitions.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pyarrow as pa

from kappa.errors import InputError, KappaError, missing_dependency
from kappa_batch.remote import (
    BundleHandle,
    check_env_check,
    check_errors,
    describe,
    is_remote_url,
    output_schema,
    ship_archive,
    unpacked,
    worker_runner,
)

log = logging.getLogger(__name__)

BUNDLES_DIR = "kappa-bundles"
ERROR_FIELDS = [pa.field("_status", pa.int32()), pa.field("_message", pa.string())]
_shipped: set[tuple[str, str]] = set()  # (client id, digest)


def _distributed() -> Any:
    try:
        import dask.dataframe  # noqa: F401
        import distributed
    except ImportError:
        raise missing_dependency("dask[dataframe] and distributed", "dask", "Dask scoring") from None
    return distributed


def _current_client() -> Any:
    distributed = _distributed()
    try:
        return distributed.get_client()
    except ValueError:  # no client: Dask's local schedulers run in this process, on this machine
        return None


def _plugin_class() -> type:
    _distributed()
    from distributed import WorkerPlugin

    class ShipBundle(WorkerPlugin):
        """Writes a bundle archive into a worker's local directory and unpacks it there."""

        def __init__(self, name: str, data: bytes) -> None:
            self.name, self.data = name, data

        def setup(self, worker: Any) -> None:
            folder = Path(worker.local_directory) / BUNDLES_DIR
            folder.mkdir(parents=True, exist_ok=True)
            archive = folder / self.name
            if not archive.exists():
                partial = folder / f".{self.name}.{os.getpid()}"
                partial.write_bytes(self.data)
                partial.rename(archive)
            unpacked(archive)

    return ShipBundle


def ship(bundle: str | os.PathLike[str], client: Any = None) -> BundleHandle:
    """Make ``bundle`` reachable from the workers of ``client`` (default: the current client)."""
    path, manifest = describe(bundle)
    if is_remote_url(bundle):
        return BundleHandle(manifest.digest, manifest.tag, url=os.fspath(bundle))
    client = client if client is not None else _current_client()
    if client is None:
        return BundleHandle(manifest.digest, manifest.tag, url=str(path))
    archive = ship_archive(path, manifest)
    handle = BundleHandle(manifest.digest, manifest.tag, shipped_name=archive.name)
    if (client.id, manifest.digest) not in _shipped:
        plugin = _plugin_class()(archive.name, archive.read_bytes())
        client.register_plugin(plugin, name=f"kappa-bundle-{handle.short}")
        _shipped.add((client.id, manifest.digest))
    return handle


def runner_for(handle: BundleHandle, api: str, env_check: str) -> Any:
    """This worker process's runner for the bundle (loaded on first use)."""
    if handle.shipped_name is None:
        assert handle.url is not None
        return worker_runner(handle, handle.url, api, env_check)
    from distributed import get_worker

    try:
        worker = get_worker()
    except ValueError:
        raise KappaError(
            f"bundle {handle.tag} was shipped to the Dask workers, but this task runs outside them"
        ) from None
    location = unpacked(Path(worker.local_directory) / BUNDLES_DIR / handle.shipped_name)
    return worker_runner(handle, location, api, env_check)


# -- Dask DataFrames ---------------------------------------------------------------------------------


def _learned_schema(ddf: Any, bundle: str | os.PathLike[str], api: str, id_column: str | None) -> pa.Schema:
    """Declared in the bundle, or learned from the first rows of the first partition."""

    def sample() -> pa.RecordBatch:
        rows = ddf.head(256, npartitions=1)
        if id_column is not None:
            rows = rows.drop(columns=[id_column])
        return pa.RecordBatch.from_pandas(rows, preserve_index=False)

    hint = "pass meta= or declare the output (e.g. DefaultOutput(dtype='int64'))"
    return output_schema(bundle, api, repr(list(ddf.dtypes.items())), sample, hint)


def _empty_frame(schema: pa.Schema, index: Any) -> Any:
    return _arrow_frame([pa.array([], f.type) for f in schema], schema, index[:0])


def score(
    ddf: Any,
    bundle: str | os.PathLike[str],
    api: str = "predict",
    id_column: str | None = None,
    errors: str = "column",
    env_check: str = "fail",
    meta: Mapping[str, Any] | None = None,
) -> Any:
    """``ddf`` scored by ``api`` of ``bundle``: a Dask DataFrame with the same index and partitions.

    Columns: ``id_column`` (kept beside the predictions, not given to the model), the
    API's outputs, and with ``errors="column"`` ``_status``/``_message`` (null where
    the row got a prediction); ``errors="raise"`` fails the task on the first failed
    row. ``meta`` ({column: Arrow type or type name}) names the output columns when
    the bundle does not declare them.
    """
    _distributed()
    check_errors(errors)
    check_env_check(env_check)
    if id_column is not None and id_column not in ddf.columns:
        raise InputError(f"id column {id_column!r} is not in the input; its columns are {list(ddf.columns)}")
    handle = ship(bundle)
    outputs = _meta_schema(meta) if meta is not None else _learned_schema(ddf, bundle, api, id_column)
    fields = list(outputs)
    if id_column is not None:
        id_type = pa.Schema.from_pandas(ddf._meta[[id_column]], preserve_index=False).field(0)
        fields.insert(0, id_type)
    if errors == "column":
        fields += ERROR_FIELDS
    schema = pa.schema(fields)
    return ddf.map_partitions(
        _score_partition,
        handle,
        api,
        id_column,
        errors,
        env_check,
        outputs,
        schema,
        meta=_empty_frame(schema, ddf._meta.index),
        align_dataframes=False,
    )


def _meta_schema(meta: Mapping[str, Any]) -> pa.Schema:
    fields = []
    for name, kind in meta.items():
        try:
            fields.append(pa.field(name, kind if isinstance(kind, pa.DataType) else pa.type_for_alias(kind)))
        except (ValueError, TypeError):
            raise InputError(
                f"meta[{name!r}] = {kind!r} is not an Arrow type; use e.g. 'int64', 'double', 'string'"
            ) from None
    return pa.schema(fields)


def frame_to_batch(frame: Any) -> pa.RecordBatch:
    """A pandas partition as Arrow; numeric NumPy columns without copying (NaN stays NaN)."""
    import numpy as np

    arrays = []
    for _, column in frame.items():
        if isinstance(column.dtype, np.dtype) and column.dtype.kind in "iuf":
            arrays.append(pa.array(column.to_numpy()))
        else:
            arrays.append(pa.Array.from_pandas(column))
    return pa.RecordBatch.from_arrays(arrays, names=[str(c) for c in frame.columns])


def _score_partition(
    frame: Any,
    handle: BundleHandle,
    api: str,
    id_column: str | None,
    errors: str,
    env_check: str,
    outputs: pa.Schema,
    schema: pa.Schema,
) -> Any:
    """One partition (pandas) -> Arrow -> the runner -> Arrow -> pandas with the input's index."""

    from kappa_batch.scoring import aligned_columns, raise_first_error

    runner = runner_for(handle, api, env_check)
    batch = frame_to_batch(frame)
    columns = []
    if id_column is not None:
        position = batch.schema.get_field_index(id_column)
        columns.append(batch.column(position))
        batch = batch.remove_column(position)
    result = runner.run(batch)
    if errors == "raise" and result.errors.num_rows:
        raise_first_error(result.errors, handle.tag, api)
    columns += aligned_columns(result, outputs, errors == "column")
    return _arrow_frame(columns, schema, frame.index)


def _arrow_frame(columns: list[pa.Array], schema: pa.Schema, index: Any) -> Any:
    """A pandas DataFrame of Arrow-backed columns (no conversion) with ``index``."""
    import pandas as pd

    data = {
        field.name: pd.arrays.ArrowExtensionArray(column.cast(field.type))
        for field, column in zip(schema, columns, strict=True)
    }
    return pd.DataFrame(data, index=index, copy=False)
