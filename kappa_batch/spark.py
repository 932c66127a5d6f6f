"""Spark: bundles as Arrow-native UDFs, and DataFrame scoring for ``spark-submit`` jobs.

* :func:`udf` gives a column UDF: ``df.withColumn("prediction", udf(*feature_cols))``
  (or ``udf(struct(...))``); data stays Arrow from the JVM to the model and back.
* :func:`score` maps a whole DataFrame through the API with ``mapInArrow``, keeping an
  id column and splitting failed rows out; ``spark_jobs/score.py`` is built on it.

The bundle reaches executors without a shared file system: a local bundle is shipped
with ``SparkContext.addFile``; a remote one (``s3://...``) is read by each executor.
Each Python worker verifies it by digest and loads it once (``kappa_batch.cache``), and
by default refuses to run when its packages differ from the bundle's pins. Every batch is
scored by :func:`kappa_batch.scoring.score_batch`, as on every other engine.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa

from kappa.adapters.schema import fit
from kappa.errors import InferenceError, InputError, missing_dependency
from kappa.threads import configured
from kappa_batch import frames, shipping
from kappa_batch.cache import check_env_check
from kappa_batch.rowids import FILE_COLUMN, SPLIT_COLUMN, Positions
from kappa_batch.scoring import check_errors, score_batch
from kappa_batch.shipping import BundleHandle
from kappa_batch.workers import worker_runner

ERROR_TYPE = pa.struct([("status", pa.int32()), ("message", pa.string())])


def _pyspark() -> Any:
    try:
        import pyspark
    except ImportError:
        raise missing_dependency("pyspark", "spark", "Spark scoring") from None
    return pyspark


def _shipped_file(name: str) -> Path:
    """On an executor: where ``SparkContext.addFile`` put the archive ``name``."""
    from pyspark import SparkFiles

    return Path(SparkFiles.get(name))


class SparkTransport:
    """Archives travel with the Spark application (``addFile``: Spark refuses folders on a cluster)."""

    finder = staticmethod(_shipped_file)

    def __init__(self, spark: Any) -> None:
        self.context = spark.sparkContext

    @property
    def key(self) -> str:
        return f"spark:{self.context.applicationId}"

    def send(self, archive: Path) -> None:
        self.context.addFile(str(archive))


def ship(spark: Any, bundle: str | os.PathLike[str], expected_digest: str | None = None) -> BundleHandle:
    """Make ``bundle`` reachable from every executor (once per Spark application): a local
    bundle as an archive, a remote one (``s3://...``) by its URL. ``expected_digest``: the
    digest the bundle must have (see :func:`kappa_batch.shipping.describe`)."""
    return shipping.ship(bundle, SparkTransport(spark), expected_digest)


def spark_type(arrow_type: pa.DataType) -> Any:
    from pyspark.sql.pandas.types import from_arrow_type

    return from_arrow_type(arrow_type)


def spark_schema(schema: pa.Schema) -> Any:
    from pyspark.sql.types import StructField, StructType

    return StructType([StructField(f.name, spark_type(f.type)) for f in schema])


def _output_arrow_type(handle_path: str, api: str, return_type: Any) -> tuple[Any, pa.DataType]:
    """The Spark and Arrow types of a UDF's result: given, or declared by the API's output adapter."""
    from pyspark.sql.pandas.types import to_arrow_type
    from pyspark.sql.types import DataType, _parse_datatype_string

    from kappa.bundle.manifest import load_manifest, schema_from_dict

    if return_type is None:
        manifest = load_manifest(Path(handle_path))
        schema = schema_from_dict(manifest.api(api).output_schema)
        if schema is None:
            raise InputError(
                f"API {manifest.name}.{api} does not declare its output type; pass return_type= "
                "(e.g. 'double', 'array<double>', 'label string, score double'), or use "
                "kappa_batch.spark.score(df, ...), which reads it from a sample of the data"
            )
        arrow = schema.field(0).type if len(schema) == 1 else pa.struct(list(schema))
        return spark_type(arrow), arrow
    spark = return_type if isinstance(return_type, DataType) else _parse_datatype_string(return_type)
    return spark, to_arrow_type(spark)


def _as_array(outputs: pa.Table, arrow_type: pa.DataType) -> pa.Array:
    """The outputs as one Arrow array of ``arrow_type`` (a struct for several columns)."""
    if pa.types.is_struct(arrow_type) and outputs.num_columns > 1:
        missing = [f.name for f in arrow_type if f.name not in outputs.column_names]
        if missing:
            raise InferenceError(f"the API output has no column {missing[0]!r} for the struct return type")
        fitted = fit(outputs, pa.schema(list(arrow_type)))
        return pa.StructArray.from_arrays(
            [c.combine_chunks() for c in fitted.columns], fields=list(arrow_type)
        )
    if outputs.num_columns != 1:
        raise InferenceError(
            f"the API returned {outputs.num_columns} columns {outputs.column_names}; "
            "declare a struct return type"
        )
    return outputs.column(0).combine_chunks().cast(arrow_type)


class KappaUDF:
    """A column UDF over a bundle's API; call it with columns (names or ``Column`` objects)."""

    def __init__(
        self,
        spark: Any,
        bundle: str,
        api: str,
        return_type: Any,
        errors: str,
        env_check: str,
        threads_per_worker: int | None = None,
    ):
        check_errors(errors)
        check_env_check(env_check)
        self.handle = ship(spark, bundle)
        path, _ = shipping.describe(bundle, self.handle.digest)
        value_spark, self.arrow_type = _output_arrow_type(str(path), api, return_type)
        self.api, self.errors, self.env_check = api, errors, env_check
        self.threads = configured(threads_per_worker)  # None: spark.task.cpus
        if errors == "column":
            from pyspark.sql.types import StructField, StructType

            self.return_type = StructType(
                [StructField("value", value_spark), StructField("error", spark_type(ERROR_TYPE))]
            )
        else:
            self.return_type = value_spark

    def __call__(self, *columns: Any) -> Any:
        from pyspark.sql.pandas.functions import ArrowUDFType, arrow_udf

        if not columns:
            raise InputError("call the UDF with the input columns, e.g. udf('a', 'b') or udf(struct(...))")
        names = [c if isinstance(c, str) else None for c in columns]
        function = _udf_function(
            self.handle, self.api, self.arrow_type, self.errors, self.env_check, names, self.threads
        )
        make: Any = arrow_udf  # pyspark's overloads do not cover a variable number of columns
        return make(function, self.return_type, ArrowUDFType.SCALAR_ITER)(*columns)


def _udf_function(
    handle: BundleHandle,
    api: str,
    arrow_type: pa.DataType,
    errors: str,
    env_check: str,
    names: Sequence[str | None],
    threads: int | None = None,
) -> Callable[[Iterator[Any]], Iterator[pa.Array]]:
    def score(iterator: Iterator[Any]) -> Iterator[pa.Array]:
        import pyarrow.compute as pc

        runner = worker_runner(handle, api, env_check, threads)
        declared = getattr(runner.api.input_adapter, "columns", None)
        for item in iterator:
            arrays = list(item) if isinstance(item, tuple) else [item]
            if len(arrays) == 1 and pa.types.is_struct(arrays[0].type):
                batch = pa.RecordBatch.from_struct_array(arrays[0])
            else:
                if all(n is not None for n in names):
                    labels = [str(n) for n in names]
                elif declared is not None and len(declared) == len(arrays):
                    labels = list(declared)
                else:
                    labels = [str(i) for i in range(len(arrays))]
                batch = pa.RecordBatch.from_arrays(arrays, names=labels)
            scored = score_batch(runner, batch)
            if errors == "raise":
                scored.raise_first_error(handle.tag, api)
            values = _as_array(scored.result.outputs, arrow_type)
            if errors == "column":
                status, message = scored.error_columns()
                error = pa.StructArray.from_arrays(
                    [status, message], fields=list(ERROR_TYPE), mask=pc.is_null(status)
                )
                yield pa.StructArray.from_arrays([values, error], names=["value", "error"])
            else:
                yield values

    return score


def udf(
    spark: Any,
    bundle: str,
    api: str = "predict",
    return_type: Any = None,
    errors: str = "raise",
    env_check: str = "fail",
    threads_per_worker: int | None = None,
) -> KappaUDF:
    """A Spark column UDF scoring with ``api`` of ``bundle`` (path, URL or ``NAME[:VERSION|:latest]``).

    ``return_type``: a Spark type or DDL string; by default the type the API's output
    adapter declares. ``errors="column"`` returns ``struct<value, error struct<status,
    message>>`` instead of failing the task on the first failed row. ``threads_per_worker``: BLAS
    and OpenMP threads of each Python worker (default: setting ``run.threads_per_worker``, else
    ``spark.task.cpus``, the cores Spark gives each task).
    """
    _pyspark()
    return KappaUDF(spark, bundle, api, return_type, errors, env_check, threads_per_worker)


# -- whole DataFrames (spark-submit jobs; `kappa run --engine spark` with --partition-by or Hadoop URLs) --


def score(
    df: Any,
    bundle: str,
    api: str = "predict",
    id_column: str | None = None,
    env_check: str = "fail",
    errors: str = "column",
    threads_per_worker: int | None = None,
) -> Any:
    """``df`` scored by ``api``: the id column (if any) and the API's output columns. Runs on ``mapInArrow``.

    ``errors="column"`` adds ``_status``/``_message`` (null where the row got a
    prediction); ``errors="raise"`` fails the task on the first failed row instead.
    ``threads_per_worker``: as for :func:`udf`.
    """
    return score_frame(df, bundle, api, id_column, env_check, errors, threads_per_worker=threads_per_worker)


def score_frame(
    df: Any,
    bundle: str,
    api: str,
    id_column: str | None,
    env_check: str,
    errors: str,
    positions: Positions | None = None,
    carry: Sequence[str] = (),
    expected_digest: str | None = None,
    threads_per_worker: int | None = None,
) -> Any:
    """:func:`score`, or with ``positions`` (and the helper columns of :mod:`kappa_batch.rowids` in
    ``df``) the ``_row`` id of every row: its position in the input files (Spark jobs). ``carry``:
    columns passed through after the others, not given to the model."""
    from pyspark.sql.pandas.types import to_arrow_type

    def arrow_field(name: str) -> pa.Field:
        return pa.field(name, to_arrow_type(df.schema[name].dataType))

    helpers = [c for c in (FILE_COLUMN, SPLIT_COLUMN) if c in df.columns]
    hidden = {*helpers, *carry}
    sample = df.drop(*[c for c in (id_column, *hidden) if c is not None and c in df.columns])
    plan = frames.plan(
        bundle,
        api,
        SparkTransport(df.sparkSession),
        columns=[c for c in df.columns if c not in hidden],
        id_field=arrow_field,
        id_column=id_column,
        errors=errors,
        env_check=env_check,
        outputs=None,
        input_key=df.schema.simpleString(),
        sample=lambda: sample.limit(256).toArrow(),
        hint="declare the API's output (e.g. DefaultOutput(dtype='int64'))",
        positions=positions,
        carry=tuple(arrow_field(c) for c in carry if c != id_column),
        expected_digest=expected_digest,
        threads=configured(threads_per_worker),
    )
    return df.mapInArrow(_score_function(plan), spark_schema(plan.schema))


def _score_function(plan: frames.FramePlan) -> Callable[[Iterator[pa.RecordBatch]], Iterator[pa.RecordBatch]]:
    """The ``mapInArrow`` function of :func:`score`: record batches in, the plan's columns out."""
    names = plan.schema.names

    def score_batches(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        for columns in plan.score_all(batches):
            yield pa.RecordBatch.from_arrays(columns, names=names)

    return score_batches
