"""``kappa gamma-service-start`` and ``kappa gamma token ...``: the registry server's commands,
plugged into the ``kappa`` CLI by entry point."""

from __future__ import annotations

from typing import Any

import click

from kappa.cli._common import Environment, age, common_options, handles_errors, iso_time, pass_env


@click.command("gamma-service-start")
@click.option("--db-url", help="Database URL (SQLAlchemy, RFC-1738); default: the repository.db_url setting.")
@click.option(
    "--repo-base-url",
    help="Where bundle files go: a folder or an fsspec URL such as s3://bucket/prefix; "
    "default: the repository.base_url setting.",
)
@click.option(
    "--host", default="127.0.0.1", show_default=True, help="Address to bind; 0.0.0.0 for every interface."
)
@click.option(
    "--port", "--grpc-port", "port", type=click.IntRange(1, 65535), default=50051, show_default=True
)
@click.option(
    "--ui-port", type=click.IntRange(1, 65535), help="Also serve the web UI (and API) on this port."
)
@click.option("--ui/--no-ui", default=True, show_default=True, help="Serve the web UI at /ui.")
@click.option("--workers", type=click.IntRange(1, 64), default=1, show_default=True, help="Server processes.")
@click.option("--allow-anonymous-read", is_flag=True, help="Let requests without a token read (never write).")
@common_options
@pass_env
@handles_errors
def gamma_service_start(
    env: Environment,
    db_url: str | None,
    repo_base_url: str | None,
    host: str,
    port: int,
    ui_port: int | None,
    ui: bool,
    workers: int,
    allow_anonymous_read: bool,
) -> None:
    """Start Kappa GammaService: the team's registry (REST API, web UI, run lineage)."""
    from kappa.errors import InputError
    from kappa.redact import redact
    from kappa_gamma.server import ServerOptions, serve

    if ui_port is not None and (workers > 1 or ui_port == port):
        raise InputError("--ui-port needs --workers 1 and a port other than --port")
    settings = env.settings()
    options = ServerOptions(
        db_url=db_url or settings.db_url,
        repo_base_url=repo_base_url or settings.base_url,
        allow_anonymous_read=allow_anonymous_read,
        ui=ui,
    )
    shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host
    env.info(f"* Starting Kappa GammaService on http://{host}:{port} ({workers} worker(s))")
    env.info(f"* Database: {redact(options.db_url or '')}; bundle files: {options.repo_base_url}")
    if ui:
        env.info(f"* Web UI: http://{shown}:{ui_port or port}/ui; API docs: http://{shown}:{port}/docs")
    env.info(f"* Usage: `kappa config set gamma_service.url={shown}:{port}` and gamma_service.token=...")
    env.info("* Tokens: `kappa gamma token create --scope read|write|admin` beside the server")
    if not allow_anonymous_read:
        env.info("* Every request needs a token (--allow-anonymous-read lets reads through)")
    serve(options, host, port, workers, ui_port)


@click.group("gamma")
def gamma_group() -> None:
    """Manage the registry server's access tokens (run beside the server, on its database)."""


@gamma_group.group("token")
def token_group() -> None:
    """Create, list and revoke access tokens."""


def _tokens(env: Environment, db_url: str | None) -> Any:
    from kappa.settings import DEFAULT_DB_RECONNECT_SECONDS
    from kappa_gamma.tokens import TokenStore

    if db_url:  # the settings are not read at all (a broken one does not stop this)
        return TokenStore(db_url, DEFAULT_DB_RECONNECT_SECONDS)
    settings = env.settings()
    return TokenStore(settings.db_url, settings.db_reconnect_seconds)


_DB_URL = click.option("--db-url", help="The server's database (default: the repository.db_url setting).")


@token_group.command("create")
@click.option("--scope", type=click.Choice(["read", "write", "admin"]), required=True)
@click.option("--name", default="", help="What the token is for (shown by `token list`).")
@_DB_URL
@common_options
@pass_env
@handles_errors
def token_create(env: Environment, scope: str, name: str, db_url: str | None) -> None:
    """Create a token; it is printed once, on the last line, and only its hash is kept."""
    token, info = _tokens(env, db_url).create(scope, name)
    env.info(f"created token {info.token_id} with scope {scope}; keep it secret, it is not shown again:")
    click.echo(token)


@token_group.command("list")
@_DB_URL
@common_options
@pass_env
@handles_errors
def token_list(env: Environment, db_url: str | None) -> None:
    """List tokens (ids, scopes, names; never the secrets)."""
    found = _tokens(env, db_url).list()
    data = [
        {
            "token_id": t.token_id,
            "scope": t.scope,
            "name": t.name,
            "created": iso_time(t.created_at),
            "revoked": t.revoked,
        }
        for t in found
    ]
    rows = [(t.token_id, t.scope, t.name, age(t.created_at), "revoked" if t.revoked else "") for t in found]
    env.emit(data, ("TOKEN_ID", "SCOPE", "NAME", "AGE", "STATE"), rows)


@token_group.command("revoke")
@click.argument("token_id")
@_DB_URL
@common_options
@pass_env
@handles_errors
def token_revoke(env: Environment, token_id: str, db_url: str | None) -> None:
    """Revoke a token: requests with it get 401 from now on."""
    from kappa.errors import InputError

    if not _tokens(env, db_url).revoke(token_id):
        raise InputError(f"no active token {token_id!r}; `kappa gamma token list` shows them")
    env.info(f"revoked {token_id}")
