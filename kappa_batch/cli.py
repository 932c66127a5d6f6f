"""``kappa run``: score data with a bundle from the command line (plugged in by entry point)."""

from __future__ import annotations

import json
from typing import Any

import click

from kappa.cli._common import Environment, common_options, handles_errors, pass_env
from kappa_batch.job import DEFAULT_BATCH_SIZE, Report, ScoreJob


class WorkerCount(click.ParamType):  # type: ignore[type-arg]
    """``--workers N`` (N >= 1) or ``auto`` (None: decided from the cores and the input)."""

    name = "N|auto"

    def convert(self, value: object, param: click.Parameter | None, ctx: click.Context | None) -> int | None:
        if value is None or isinstance(value, int) and not isinstance(value, bool):
            number = value
        elif str(value).strip().lower() == "auto":
            return None
        else:
            try:
                number = int(str(value))
            except ValueError:
                number = 0
        if number is not None and number < 1:
            self.fail(f"{value!r} is neither a whole number of at least 1 nor 'auto'", param, ctx)
        return number


WORKERS = WorkerCount()


@click.command("run")
@click.argument("bundle", metavar="BUNDLE")
@click.argument("api", metavar="API")
@click.option("--input", "input_text", help="Inline input as JSON, e.g. '[[5.1, 3.5, 1.4, 0.2]]'.")
@click.option(
    "--input-file",
    help="File, folder, glob or URL (CSV, Parquet, JSON Lines, JSON; files for File/ImageInput).",
)
@click.option(
    "--input-format",
    type=click.Choice(["parquet", "csv", "jsonl", "json"]),
    help="Override the input format.",
)
@click.option(
    "--output-file", help="Output folder (shards) or file (.parquet/.csv/.jsonl); local path or URL."
)
@click.option(
    "--format", "output_format", type=click.Choice(["parquet", "csv", "jsonl"]), help="Output format."
)
@click.option("--errors-file", help="Where failed rows go (default: beside the output).")
@click.option("--id-column", help="Input column that identifies rows in the output (default: row position).")
@click.option("--batch-size", type=click.IntRange(min=1), default=DEFAULT_BATCH_SIZE, show_default=True)
@click.option(
    "--workers",
    type=WORKERS,
    default="auto",
    show_default=True,
    help="Scoring processes, or auto: one per core, at most one per shard of the input.",
)
@click.option(
    "--threads-per-worker",
    type=click.IntRange(min=1),
    help="BLAS/OpenMP threads of each scoring process (default: setting run.threads_per_worker, "
    "else the cores shared evenly).",
)
@click.option(
    "--max-error-rate",
    type=click.FloatRange(0, 1),
    help="Exit non-zero past this share of failed rows (default: setting run.max_error_rate, 0.5; "
    "1 never fails on rows).",
)
@click.option("--resume", is_flag=True, help="Finish an interrupted run, skipping completed shards.")
@click.option("--overwrite", is_flag=True, help="Replace an existing output.")
@click.option("--report", "report_file", help="Write the run report (JSON) here.")
@click.option("--progress/--no-progress", default=None, help="Progress bar (default: on a terminal).")
@click.option("--engine", type=click.Choice(["local", "spark", "dask"]), default="local", show_default=True)
@click.option("--master", help="Spark master URL with --engine spark (default: local[*]).")
@click.option(
    "--scheduler",
    help="Dask scheduler (tcp://HOST:PORT) with --engine dask (default: a local cluster of --workers).",
)
@click.option("--partition-by", multiple=True, help="Output partition column(s), with --engine spark.")
@common_options
@pass_env
@handles_errors
def run_command(env: Environment, /, **options: object) -> None:
    """Score INPUT with API of BUNDLE (a path, URL or NAME[:VERSION|:latest])."""
    engine, master, partition_by = options.pop("engine"), options.pop("master"), options.pop("partition_by")
    scheduler = options.pop("scheduler")
    job = ScoreJob(**options)  # type: ignore[arg-type]
    if engine == "spark":
        _run_spark(env, job, str(master) if master else None, list(partition_by))  # type: ignore[call-overload]
        return
    if master or partition_by:
        raise click.UsageError("--master and --partition-by need --engine spark")
    if scheduler and engine != "dask":
        raise click.UsageError("--scheduler needs --engine dask")
    if scheduler and job.workers is not None:
        raise click.UsageError("--workers sizes a local Dask cluster; with --scheduler the cluster decides")
    if job.resume and job.overwrite:
        raise click.UsageError("--resume and --overwrite exclude each other")
    if job.input_text is not None and job.input_file is not None:
        raise click.UsageError("give --input or --input-file, not both")
    if job.input_text is not None and job.output_file is None:
        with _one_process(job):
            _print_inline(env, job)
        return
    if job.input_file is not None and job.output_file is None:
        if engine != "local":
            raise click.UsageError(f"--engine {engine} writes files: give --output-file")
        if job.errors_file or job.resume or job.overwrite:
            raise click.UsageError(
                "--errors-file, --resume and --overwrite need --output-file; without it the "
                "predictions print to standard output and failed rows to standard error"
            )
        with _one_process(job):
            _print_file(job)
        return
    if engine == "dask":
        from kappa_batch.engines.dask_job import run_on_dask

        report = run_on_dask(job, str(scheduler) if scheduler else None)
    else:
        from kappa_batch.engines.local import run

        report = run(job)
    _show(env, report)
    if not report.succeeded:
        raise _too_many_failed(job, report, f"no _SUCCESS was written; see {report.errors_file}")


def _one_process(job: ScoreJob) -> Any:
    """Printing scores in this one process: all the cores, or --threads-per-worker."""
    from kappa import threads

    return threads.limited(threads.share(1, threads.configured(job.threads_per_worker)))


def _too_many_failed(job: ScoreJob, report: Report, then: str = "") -> click.ClickException:
    """The one line a run past its error budget ends with (local, printed and Spark runs)."""
    from kappa_batch.engines.local import max_error_rate

    return click.ClickException(
        f"{report.rows_error} of {report.rows_in} rows failed ({report.error_rate:.2%}), more than "
        f"--max-error-rate {max_error_rate(job):.2%} (setting run.max_error_rate)"
        + (f"; {then}" if then else "")
    )


def _print_inline(env: Environment, job: ScoreJob) -> None:
    from kappa.adapters._json import dumps
    from kappa_batch.printing import score_inline

    report, values, failures = score_inline(job)
    click.echo(dumps(values))
    for failure in failures:
        click.echo(json.dumps(failure), err=True)
    if not report.succeeded:
        raise click.ClickException(f"{report.rows_error} of {report.rows_in} rows failed")


def _print_file(job: ScoreJob) -> None:
    """``--input-file`` without ``--output-file``: the predictions as one JSON array on standard
    output, written batch by batch; failed rows print as ``null`` (details on standard error)."""
    from kappa.adapters._json import dumps
    from kappa_batch.printing import Printed, stream_json

    printed = Printed()
    opened = False
    for values, errors in stream_json(job, printed):
        if values:
            click.echo(("," if opened else "[") + ",".join(dumps(v) for v in values), nl=False)
            opened = True
        for error in errors:
            click.echo(json.dumps(error), err=True)
    click.echo("]" if opened else "[]")
    report = printed.report
    if report is not None and job.report_file:
        report.write(job.report_file)
    if report is not None and not report.succeeded:
        raise _too_many_failed(job, report)


def _run_spark(env: Environment, job: ScoreJob, master: str | None, partition_by: list[str]) -> None:
    from kappa.errors import InputError
    from kappa_batch.engines import spark_job, spark_pool
    from kappa_batch.engines.local import max_error_rate

    if job.input_file is None or job.output_file is None:
        raise InputError("--engine spark needs --input-file and --output-file")
    if job.workers is not None:
        raise InputError("--workers sizes the local engine and a local Dask cluster; Spark's cluster decides")
    if job.resume and job.overwrite:
        raise InputError("--resume and --overwrite exclude each other")
    if job.resume and not spark_pool.scores_shards(job, partition_by):  # before a session starts
        raise InputError(
            "--resume needs Kappa's own shards: Parquet input, no --partition-by and no Hadoop file "
            "system (hdfs://, s3a://, ...); there Spark's task retry and overwrite stand in for it"
        )
    spark = spark_job.session(master)
    try:
        plain_paths = spark_pool.default_fs(spark)
        if spark_pool.scores_shards(job, partition_by, plain_paths):
            report = spark_pool.run_on_spark(spark, job)
            _show(env, report)
            if not report.succeeded:
                raise _too_many_failed(job, report, f"no _SUCCESS was written; see {report.errors_file}")
            return
        if job.resume:
            raise InputError(
                f"--resume needs Kappa's own shards, and plain paths here are on {plain_paths} "
                "(Hadoop's fs.defaultFS): pass file:// paths or URLs"
            )
        report = spark_job.run(
            spark,
            job.bundle,
            job.api,
            job.input_file,
            job.output_file,
            job.output_format or "parquet",
            job.input_format,
            job.id_column,
            partition_by,
            job.errors_file,
            max_error_rate=max_error_rate(job),
            threads_per_worker=job.threads_per_worker,
        )
    finally:
        spark.stop()
    if job.report_file:
        report.write(job.report_file)
    _show(env, report)
    if not report.succeeded:
        raise _too_many_failed(job, report, f"see {report.errors_file}")


def _show(env: Environment, report: Report) -> None:
    if env.output != "table":
        env.emit(report.to_dict())
        return
    env.info(
        f"{report.status}: {report.rows_in} rows in, {report.rows_out} out, {report.rows_error} in error, "
        f"{report.rows_per_second:.0f} rows/s on {report.engine} with {report.bundle}; "
        f"output: {report.output}"
    )
