"""Repository commands: list, get, delete, gc, retrieve, import, export."""

from __future__ import annotations

import math
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from kappa.cli._common import Environment, age, common_options, handles_errors, pass_env

if TYPE_CHECKING:
    from kappa.repository.records import BundleRecord
    from kappa.repository.repository import Repository

LIST_COLUMNS = ("MODEL_VERSION", "AGE", "APIS", "ARTIFACTS", "LABELS")


def _record_dict(record: BundleRecord) -> dict[str, Any]:
    return record.to_dict()


def _emit_records(env: Environment, records: list[BundleRecord]) -> None:
    rows = [
        (
            record.tag,
            age(record.created_at),
            ", ".join(record.summary.get("apis", [])),
            ", ".join(record.summary.get("artifacts", [])),
            ", ".join(f"{k}={v}" for k, v in sorted(record.labels.items())),
        )
        for record in records
    ]
    env.emit([_record_dict(r) for r in records], LIST_COLUMNS, rows)


@click.command("list")
@click.argument("name", required=False)
@click.option(
    "--labels",
    "selector",
    help="Label selector, e.g. 'framework=sklearn, stage In (prod, qa)'. Forms: k=v, k!=v, k In (a, b), "
    "k NotIn (a, b), k Exists, k DoesNotExist; a comma means AND. k!=v and k NotIn (...) need the "
    "label k (with another value); k DoesNotExist selects bundles without it.",
)
@click.option("--limit", type=click.IntRange(min=1), help="Show at most this many bundles.")
@click.option("--offset", type=click.IntRange(min=0), default=0, show_default=True, help="Skip this many.")
@click.option(
    "--order-by",
    type=click.Choice(["created_at", "name", "version"]),
    default="created_at",
    show_default=True,
)
@click.option("--ascending-order", is_flag=True, help="Oldest (or A-Z) first.")
@common_options
@pass_env
@handles_errors
def list_command(
    env: Environment,
    name: str | None,
    selector: str | None,
    limit: int | None,
    offset: int,
    order_by: str,
    ascending_order: bool,
) -> None:
    """List ready bundles, newest first."""
    records = env.repository().list(name, selector, limit, offset, order_by, ascending_order)
    _emit_records(env, records)


@click.command("get")
@click.argument("ref", metavar="NAME[:VERSION|:latest]")
@click.option("--print-location", is_flag=True, help="Print only where the bundle's files are.")
@click.option("--labels", "selector", help="With NAME alone: only versions matching this selector.")
@common_options
@pass_env
@handles_errors
def get_command(env: Environment, ref: str, print_location: bool, selector: str | None) -> None:
    """Show one bundle's full metadata (NAME:VERSION) or the versions of NAME."""
    from kappa.errors import BundleError

    repo = env.repository()
    if ":" not in ref and not print_location:
        records = repo.list(ref, selector)
        if not records:
            if selector and repo.list(ref):
                raise BundleError(f"no version of {ref} matches {selector!r}; `kappa get {ref}` lists them")
            raise BundleError(f"no bundle named {ref} is in the repository; see `kappa list`")
        _emit_records(env, records)
        return
    record = repo.get(ref)
    if print_location:
        click.echo(record.uri)
        return
    manifest = repo.manifest(record.tag)
    for api in manifest.get("apis", []):  # the IPC form is for engines, not people
        for key in ("input_schema", "output_schema"):
            if api.get(key):
                api[key] = api[key]["fields"]
    manifest["uri"] = record.uri
    if env.output == "table":
        env.output = "yaml"
    env.emit(manifest)


@click.command("delete")
@click.argument("refs", nargs=-1, required=True, metavar="NAME:VERSION... | NAME --all")
@click.option("--all", "delete_all", is_flag=True, help="Delete every version of NAME.")
@click.option("-y", "--yes", is_flag=True, help="Do not ask for confirmation.")
@common_options
@pass_env
@handles_errors
def delete_command(env: Environment, refs: tuple[str, ...], delete_all: bool, yes: bool) -> None:
    """Delete bundles: the row is marked deleted first, then the files are removed."""
    from kappa.errors import RepositoryError

    repo = env.repository()
    if delete_all:
        if any(":" in r for r in refs):
            raise RepositoryError("--all takes service NAMEs, not NAME:VERSION")
        targets = [r.tag for name in refs for r in repo.list(name)]
    else:
        targets = [repo.deletable(r).tag for r in refs]
    if not targets:
        env.info("nothing to delete")
        return
    if not yes:
        if not sys.stdin.isatty():
            raise click.ClickException(
                f"refusing to delete {len(targets)} bundle(s) without -y (no terminal to ask)"
            )
        click.confirm(f"Delete {', '.join(targets)}?", abort=True)
    for tag in targets:
        repo.delete(tag)
        env.info(f"deleted {tag}")


DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
DURATION = re.compile(r"(\d+(?:\.\d*)?|\.\d+)\s*([smhd]?)")  # whole string: fullmatch


def _seconds(ctx: click.Context, param: click.Parameter, value: str) -> float:
    """``30m``, ``6h``, ``2d`` (or seconds) as seconds."""
    found = DURATION.fullmatch(value.strip().lower())
    seconds = float(found[1]) * DURATION_UNITS.get(found[2], 1) if found else math.inf
    if not math.isfinite(seconds):
        raise click.BadParameter(f"{value!r} is not a duration; write e.g. 90s, 30m, 6h or 2d")
    return seconds


@click.command("gc")
@click.option(
    "--older-than",
    default="24h",
    show_default=True,
    callback=_seconds,
    help="Only saves begun this long ago (90s, 30m, 6h, 2d): a save still running is younger.",
)
@click.option("--dry-run", is_flag=True, help="Show the stranded saves; remove nothing.")
@common_options
@pass_env
@handles_errors
def gc_command(env: Environment, older_than: float, dry_run: bool) -> None:
    """Remove saves that never completed: their rows (never listed) and the files they left.

    A save whose process was killed, or whose database went away when it failed, leaves a
    `pending` row and maybe part of its files. Nothing listed or loadable is touched.
    """
    from kappa.errors import InputError, RepositoryError
    from kappa.repository.repository import Repository

    repo = env.repository()
    if not isinstance(repo, Repository):
        raise InputError(
            "kappa gc works on the repository's own database and files: run it where the registry "
            "server's repository is configured (KAPPA_DB_URL, KAPPA_BASE_URL), not through its URL"
        )
    stranded = repo.stranded(older_than)
    removed, failed = (stranded, []) if dry_run else _discard(env, repo, stranded)
    rows = [(r.tag, age(r.created_at), r.uri) for r in removed]
    env.emit(
        [{"tag": r.tag, "created_at": r.created_at, "uri": r.uri, "removed": not dry_run} for r in removed],
        ("STRANDED_SAVE" if dry_run else "REMOVED", "AGE", "URI"),
        rows,
    )
    if not removed and not failed:
        env.info("no stranded saves" + (f" begun over {_readable(older_than)} ago" if older_than else ""))
    if failed:
        raise RepositoryError(
            f"{len(failed)} stranded save(s) could not be removed ({', '.join(failed)}); "
            "they stay unlisted: run `kappa gc` again once their files can be removed"
        )


def _discard(
    env: Environment, repo: Repository, stranded: Sequence[BundleRecord]
) -> tuple[list[BundleRecord], list[str]]:
    """Discard each stranded save; one whose files cannot be removed is said and skipped."""
    from kappa.errors import KappaError

    removed: list[BundleRecord] = []
    failed: list[str] = []
    for record in stranded:
        try:
            if repo.discard(record):
                removed.append(record)
        except (KappaError, OSError) as exc:  # the store or the database: the others may still go
            env.info(f"could not remove {record.tag} at {record.uri}: {exc}")
            failed.append(record.tag)
    return removed, failed


def _readable(seconds: float) -> str:
    for unit, size in sorted(DURATION_UNITS.items(), key=lambda item: -item[1]):
        if seconds >= size and seconds % size == 0:
            return f"{seconds / size:g}{unit}"
    return f"{seconds:g}s"


@click.command("retrieve")
@click.argument("ref", metavar="NAME[:VERSION|:latest]")
@click.option(
    "--target_dir",
    "--target-dir",
    "target_dir",
    type=click.Path(path_type=Path),
    help="Folder to put the bundle into; it must not exist. Defaults to NAME-VERSION in the current folder.",
)
@common_options
@pass_env
@handles_errors
def retrieve_command(env: Environment, ref: str, target_dir: Path | None) -> None:
    """Copy a bundle into a new folder (never overwrites one)."""
    repository = env.repository()
    if target_dir is None:
        record = repository.get(ref)
        target_dir = Path.cwd() / f"{record.name}-{record.version}"
        ref = record.tag
    path = repository.retrieve(ref, target_dir)
    env.info(f"retrieved {ref} into {path}")


@click.command("import")
@click.argument("source", metavar="DIR|FILE.tar.gz|URL")
@common_options
@pass_env
@handles_errors
def import_command(env: Environment, source: str) -> None:
    """Add a bundle folder or archive to the repository, after verifying every file."""
    record = env.repository().import_bundle(source)
    env.info(f"imported {record.tag}")
    if env.output != "table":
        env.emit(_record_dict(record))


@click.command("export")
@click.argument("ref", metavar="NAME[:VERSION|:latest]")
@click.argument("target", type=click.Path(path_type=Path), metavar="FILE.tar.gz")
@common_options
@pass_env
@handles_errors
def export_command(env: Environment, ref: str, target: Path) -> None:
    """Write a bundle as a .tar.gz archive that `kappa import` reads."""
    path = env.repository().export(ref, target)
    env.info(f"exported {ref} to {path}")
