"""``kappa run``: score data with a bundle from the command line (plugged in by entry point)."""

from __future__ import annotations

import json

import click

from kappa.cli._common import Environment, common_options, handles_errors, pass_env
from kappa_batch.job import DEFAULT_BATCH_SIZE, ScoreJob


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
    "--workers", type=click.IntRange(min=1), default=1, show_default=True, help="Scoring processes."
)
@click.option(
    "--max-error-rate", type=click.FloatRange(0, 1), help="Fail the run past this share of failed rows."
)
@click.option("--resume", is_flag=True, help="Finish an interrupted run, skipping completed shards.")
@click.option("--overwrite", is_flag=True, help="Replace an existing output.")
@click.option("--report", "report_file", help="Write the run report (JSON) here.")
@click.option("--progress/--no-progress", default=None, help="Progress bar (default: on a terminal).")
@common_options
@pass_env
@handles_errors
def run_command(env: Environment, /, **options: object) -> None:
    """Score INPUT with API of BUNDLE (a path, URL or NAME[:VERSION|:latest])."""
    job = ScoreJob(**options)  # type: ignore[arg-type]
    if job.resume and job.overwrite:
        raise click.UsageError("--resume and --overwrite exclude each other")
    if job.input_text is not None and job.input_file is not None:
        raise click.UsageError("give --input or --input-file, not both")
    if job.input_text is not None and job.output_file is None:
        _print_inline(env, job)
        return
    from kappa_batch.runners.local import run

    report = run(job)
    if env.output == "table":
        env.info(
            f"{report.status}: {report.rows_in} rows in, {report.rows_out} out, {report.rows_error} in "
            f"error, {report.rows_per_second:.0f} rows/s with {report.bundle}; output: {report.output}"
        )
    else:
        env.emit(report.to_dict())
    if not report.succeeded:
        raise click.ClickException(
            f"{report.rows_error} of {report.rows_in} rows failed ({report.error_rate:.2%}), more than "
            f"--max-error-rate {job.max_error_rate:.2%}; see {report.errors_file}"
        )


def _print_inline(env: Environment, job: ScoreJob) -> None:
    from kappa.adapters._json import dumps
    from kappa_batch.runners.local import score_inline

    report, shard = score_inline(job)
    id_name = shard.outputs.column_names[0]
    by_id = {r.pop(id_name): r for r in shard.outputs.to_pylist()}
    ids = [*shard.outputs.column(0).to_pylist(), *shard.errors.column(0).to_pylist()]
    click.echo(dumps([by_id.get(i) for i in sorted(ids)]))
    for error in shard.errors.to_pylist():
        click.echo(
            json.dumps({"row": error[id_name], "status": error["status"], "error": error["message"]}),
            err=True,
        )
    if not report.succeeded:
        raise click.ClickException(f"{report.rows_error} of {report.rows_in} rows failed")
