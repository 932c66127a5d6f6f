"""Dask: score Dask DataFrames partition by partition through Arrow and the batch runner.

:func:`score` maps every partition of a Dask DataFrame through the API. The model is
never part of the task graph: tasks carry a small :class:`~kappa_batch.shipping.BundleHandle`
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

from kappa.adapters.dataframe import frame_to_arrow
from kappa.errors import InputError, KappaError, missing_dependency
from kappa_batch import frames, shipping
from kappa_batch.shipping import BundleHandle
from kappa_batch.workers import worker_runner

log = logging.getLogger(__name__)

BUNDLES_DIR = "kappa-bundles"


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
            shipping.unpacked(archive)

    return ShipBundle


def _shipped_file(name: str) -> Path:
    """On a Dask worker: where the plugin put the archive ``name``."""
    from distributed import get_worker

    try:
        worker = get_worker()
    except ValueError:
        raise KappaError(
            f"bundle archive {name} was shipped to the Dask workers, but this task runs outside them"
        ) from None
    return Path(worker.local_directory) / BUNDLES_DIR / name


class DaskTransport:
    """Archives reach every worker of a client, present and future, through a worker plugin."""

    finder = staticmethod(_shipped_file)

    def __init__(self, client: Any) -> None:
        self.client = client

    @property
    def key(self) -> str:
        return f"dask:{self.client.id}"

    def send(self, archive: Path) -> None:
        plugin = _plugin_class()(archive.name, archive.read_bytes())
        self.client.register_plugin(plugin, name=archive.name.removesuffix(".tar.gz"))


def _transport(client: Any = None) -> DaskTransport | None:
    """The transport to ``client``'s workers (default: the current client); without a client,
    Dask's local schedulers read the bundle's folder on this machine (no transport)."""
    client = client if client is not None else _current_client()
    return DaskTransport(client) if client is not None else None


def ship(
    bundle: str | os.PathLike[str], client: Any = None, expected_digest: str | None = None
) -> BundleHandle:
    """Make ``bundle`` reachable from the workers of ``client`` (default: the current client).
    ``expected_digest``: the digest the bundle must have."""
    return shipping.ship(bundle, _transport(client), expected_digest)


def runner_for(handle: BundleHandle, api: str, env_check: str) -> Any:
    """This worker process's runner for the bundle (loaded on first use)."""
    return worker_runner(handle, api, env_check)


# -- Dask DataFrames ---------------------------------------------------------------------------------


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
    threads_per_worker: int | None = None,
) -> Any:
    """``ddf`` scored by ``api`` of ``bundle``: a Dask DataFrame with the same index and partitions.

    Columns: ``id_column`` (kept beside the predictions, not given to the model), the
    API's outputs, and with ``errors="column"`` ``_status``/``_message`` (null where
    the row got a prediction); ``errors="raise"`` fails the task on the first failed
    row. ``meta`` ({column: Arrow type or type name}) names the output columns when
    the bundle does not declare them. ``threads_per_worker``: BLAS and OpenMP threads of
    each worker process (default: setting ``run.threads_per_worker``, else each host's
    cores shared by the Dask threads on it).
    """
    from kappa.threads import configured
    from kappa_batch.workers import dask_share

    _distributed()
    shares = dask_share(_current_client(), configured(threads_per_worker))

    def sample() -> pa.RecordBatch:
        rows = ddf.head(256, npartitions=1)
        return frame_to_arrow(rows.drop(columns=[id_column]) if id_column is not None else rows)

    plan = frames.plan(
        bundle,
        api,
        _transport(),
        columns=[str(c) for c in ddf.columns],
        id_field=lambda name: frame_to_arrow(ddf._meta[[name]]).schema.field(0),
        id_column=id_column,
        errors=errors,
        env_check=env_check,
        outputs=_meta_schema(meta) if meta is not None else None,
        input_key=repr(list(ddf.dtypes.items())),
        sample=sample,
        hint="pass meta= or declare the output (e.g. DefaultOutput(dtype='int64'))",
        threads=shares,
    )
    return ddf.map_partitions(
        _score_partition, plan, meta=_empty_frame(plan.schema, ddf._meta.index), align_dataframes=False
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


def _score_partition(frame: Any, plan: frames.FramePlan) -> Any:
    """One partition (pandas) -> Arrow -> the scorer -> Arrow -> pandas with the input's index."""
    return _arrow_frame(plan.score(frame_to_arrow(frame)), plan.schema, frame.index)


def _arrow_frame(columns: list[pa.Array], schema: pa.Schema, index: Any) -> Any:
    """A pandas DataFrame of Arrow-backed columns (no conversion) with ``index``."""
    import pandas as pd

    data = {
        field.name: pd.arrays.ArrowExtensionArray(column.cast(field.type))
        for field, column in zip(schema, columns, strict=True)
    }
    return pd.DataFrame(data, index=index, copy=False)
