"""Spark: bundles as Arrow-native UDFs, and DataFrame scoring for ``spark-submit`` jobs.

* :func:`udf` gives a column UDF: ``df.withColumn("prediction", udf(*feature_cols))``
  (or ``udf(struct(...))``); data stays Arrow from the JVM to the model and back.
* :func:`score` maps a whole DataFrame through the API with ``mapInArrow``, keeping an
  id column and splitting failed rows out; ``spark_jobs/score.py`` is built on it.

The bundle reaches executors without a shared file system: a local bundle is shipped
with ``SparkContext.addFile``; a remote one (``s3://...``) is read by each executor.
Each Python worker verifies it by digest and loads it once (``kappa_batch.cache``), and
by default refuses to run when its packages differ from the bundle's pins.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa

from kappa.errors import InferenceError, InputError, missing_dependency
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
from kappa_batch.scoring import aligned_columns, error_columns, raise_first_error, split_ids

ERROR_TYPE = pa.struct([("status", pa.int32()), ("message", pa.string())])
_shipped: dict[tuple[str, str], str] = {}  # (SparkContext app id, digest) -> shipped name


def _pyspark() -> Any:
    try:
        import pyspark
    except ImportError:
        raise missing_dependency("pyspark", "spark", "Spark scoring") from None
    return pyspark


def ship(spark: Any, bundle: str | os.PathLike[str], expected_digest: str | None = None) -> BundleHandle:
    """Make ``bundle`` reachable from every executor (once per Spark application).

    A local bundle travels as an archive with ``addFile`` (Spark refuses directories on a
    cluster); a remote one (``s3://...``) is read by each executor from its URL.
    ``expected_digest``: the digest the bundle must have (see :func:`remote.describe`).
    """
    path, manifest = describe(bundle, expected_digest)
    if is_remote_url(bundle):
        return BundleHandle(manifest.digest, manifest.tag, url=os.fspath(bundle))
    context = spark.sparkContext
    key = (context.applicationId, manifest.digest)
    if key not in _shipped:
        archive = ship_archive(path, manifest)
        context.addFile(str(archive))
        _shipped[key] = archive.name
    return BundleHandle(manifest.digest, manifest.tag, shipped_name=_shipped[key])


def _runner(handle: BundleHandle, api: str, env_check: str) -> Any:
    """The runner for this Python worker; loaded and checked once per process."""
    if handle.shipped_name is not None:
        from pyspark import SparkFiles

        location = unpacked(Path(SparkFiles.get(handle.shipped_name)))
    else:
        assert handle.url is not None
        location = handle.url
    return worker_runner(handle, location, api, env_check)


def spark_type(arrow_type: pa.DataType) -> Any:
    from pyspark.sql.pandas.types import from_arrow_type

    return from_arrow_type(arrow_type)


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
    columns = [c.combine_chunks() for c in outputs.columns]
    if pa.types.is_struct(arrow_type) and len(columns) > 1:
        arrays = []
        for field in arrow_type:
            if field.name not in outputs.column_names:
                raise InferenceError(
                    f"the API output has no column {field.name!r} for the struct return type"
                )
            arrays.append(outputs.column(field.name).combine_chunks().cast(field.type))
        return pa.StructArray.from_arrays(arrays, fields=list(arrow_type))
    if len(columns) != 1:
        raise InferenceError(
            f"the API returned {len(columns)} columns {outputs.column_names}; declare a struct return type"
        )
    return columns[0].cast(arrow_type)


def _errors_array(errors: pa.Table, size: int) -> pa.Array:
    import pyarrow.compute as pc

    status, message = error_columns(errors, size)
    return pa.StructArray.from_arrays([status, message], fields=list(ERROR_TYPE), mask=pc.is_null(status))


class KappaUDF:
    """A column UDF over a bundle's API; call it with columns (names or ``Column`` objects)."""

    def __init__(self, spark: Any, bundle: str, api: str, return_type: Any, errors: str, env_check: str):
        check_errors(errors)
        check_env_check(env_check)
        self.handle = ship(spark, bundle)
        from kappa.bundle.load import resolve

        value_spark, self.arrow_type = _output_arrow_type(str(resolve(bundle)), api, return_type)
        self.api, self.errors, self.env_check = api, errors, env_check
        if errors == "column":
            from pyspark.sql.types import IntegerType, StringType, StructField, StructType

            error_struct = StructType(
                [StructField("status", IntegerType()), StructField("message", StringType())]
            )
            self.return_type = StructType(
                [StructField("value", value_spark), StructField("error", error_struct)]
            )
        else:
            self.return_type = value_spark

    def __call__(self, *columns: Any) -> Any:
        from pyspark.sql.pandas.functions import ArrowUDFType, arrow_udf

        if not columns:
            raise InputError("call the UDF with the input columns, e.g. udf('a', 'b') or udf(struct(...))")
        names = [c if isinstance(c, str) else None for c in columns]
        function = _udf_function(self.handle, self.api, self.arrow_type, self.errors, self.env_check, names)
        make: Any = arrow_udf  # pyspark's overloads do not cover a variable number of columns
        return make(function, self.return_type, ArrowUDFType.SCALAR_ITER)(*columns)


def _udf_function(
    handle: BundleHandle,
    api: str,
    arrow_type: pa.DataType,
    errors: str,
    env_check: str,
    names: Sequence[str | None],
) -> Callable[[Iterator[Any]], Iterator[pa.Array]]:
    def score(iterator: Iterator[Any]) -> Iterator[pa.Array]:
        runner = _runner(handle, api, env_check)
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
            result = runner.run(batch)
            if errors == "raise" and result.errors.num_rows:
                raise_first_error(result.errors, handle.tag, api)
            values = _as_array(result.outputs, arrow_type)
            if errors == "column":
                yield pa.StructArray.from_arrays(
                    [values, _errors_array(result.errors, batch.num_rows)], names=["value", "error"]
                )
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
) -> KappaUDF:
    """A Spark column UDF scoring with ``api`` of ``bundle`` (path, URL or ``NAME[:VERSION|:latest]``).

    ``return_type``: a Spark type or DDL string; by default the type the API's output
    adapter declares. ``errors="column"`` returns ``struct<value, error struct<status,
    message>>`` instead of failing the task on the first failed row.
    """
    _pyspark()
    return KappaUDF(spark, bundle, api, return_type, errors, env_check)


# -- whole DataFrames (spark-submit jobs, `kappa run --engine spark`) ---------------------


def score(
    df: Any,
    bundle: str,
    api: str = "predict",
    id_column: str | None = None,
    env_check: str = "fail",
    errors: str = "column",
) -> Any:
    """``df`` scored by ``api``: the id column (if any) and the API's output columns. Runs on ``mapInArrow``.

    ``errors="column"`` adds ``_status``/``_message`` (null where the row got a
    prediction); ``errors="raise"`` fails the task on the first failed row instead.
    """
    check_errors(errors)
    check_env_check(env_check)
    handle = ship(df.sparkSession, bundle)
    if id_column is not None and id_column not in df.columns:
        raise InputError(f"id column {id_column!r} is not in the input; its columns are {df.columns}")
    sample = df.drop(id_column) if id_column else df
    outputs = output_schema(
        bundle,
        api,
        df.schema.simpleString(),
        lambda: sample.limit(256).toArrow(),
        "declare the API's output (e.g. DefaultOutput(dtype='int64'))",
    )
    fields = [df.schema[id_column]] if id_column else []
    from pyspark.sql.types import IntegerType, StringType, StructField, StructType

    fields += [StructField(f.name, spark_type(f.type)) for f in outputs]
    if errors == "column":
        fields += [StructField("_status", IntegerType()), StructField("_message", StringType())]
    schema = StructType(fields)
    function = _score_function(handle, api, outputs, schema.fieldNames(), id_column, errors, env_check)
    return df.mapInArrow(function, schema)


def _score_function(
    handle: BundleHandle,
    api: str,
    outputs: pa.Schema,
    names: Sequence[str],
    id_column: str | None,
    errors: str,
    env_check: str,
) -> Callable[[Iterator[pa.RecordBatch]], Iterator[pa.RecordBatch]]:
    """The ``mapInArrow`` function of :func:`score`: record batches in, ``names`` columns out."""
    labels = list(names)

    def score_batches(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        runner = _runner(handle, api, env_check)
        for batch in batches:
            columns = []
            if id_column is not None:
                _, ids, batch = split_ids(batch, 0, id_column)
                columns.append(ids)
            result = runner.run(batch)
            if errors == "raise" and result.errors.num_rows:
                raise_first_error(result.errors, handle.tag, api)
            columns += aligned_columns(result, outputs, errors == "column")
            yield pa.RecordBatch.from_arrays(columns, names=labels)

    return score_batches
