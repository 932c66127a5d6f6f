"""``kappa config``: read and write ``$KAPPA_HOME/config.yaml``."""

from __future__ import annotations

import click

from kappa.cli._common import Environment, common_options, handles_errors, pass_env


@click.group("config")
def config_group() -> None:
    """Read and write persistent settings ($KAPPA_HOME/config.yaml)."""


@config_group.command("set")
@click.argument("assignments", nargs=-1, required=True, metavar="KEY=VALUE...")
@common_options
@pass_env
@handles_errors
def set_command(env: Environment, assignments: tuple[str, ...]) -> None:
    """Set settings, e.g. repository.db_url=postgresql+psycopg://user@host/db."""
    from kappa.errors import ConfigError
    from kappa.settings import check_key, read_config_file, user_config, write_user_config

    values = read_config_file(user_config())
    for assignment in assignments:
        key, sep, value = assignment.partition("=")
        if not sep or not value:
            raise ConfigError(f"expected KEY=VALUE, got {assignment!r}")
        values[check_key(key.strip())] = value.strip()
    from kappa.settings import KappaSettings

    KappaSettings.load(overrides=values)  # a value no command could use is refused, not written
    path = write_user_config(values)
    env.info(f"wrote {path}")


@config_group.command("unset")
@click.argument("keys", nargs=-1, required=True)
@common_options
@pass_env
@handles_errors
def unset_command(env: Environment, keys: tuple[str, ...]) -> None:
    """Remove settings from the user config."""
    from kappa.settings import check_key, read_config_file, user_config, write_user_config

    values = read_config_file(user_config())
    for key in keys:
        values.pop(check_key(key), None)
    env.info(f"wrote {write_user_config(values)}")


@config_group.command("get")
@click.argument("key", required=False)
@common_options
@pass_env
@handles_errors
def get_command(env: Environment, key: str | None) -> None:
    """Show the effective settings (or one) and where each comes from."""
    from kappa.settings import KEYS, check_key, redact

    settings = env.settings()
    keys = [check_key(key)] if key else sorted(KEYS)
    data = {}
    for name in keys:
        attr = KEYS[name]
        value = str(getattr(settings, attr))
        if attr == "gamma_token" and getattr(settings, attr):
            value = "****"  # a secret: `kappa config get` never prints it
        elif attr == "db_url":
            value = redact(value)
        data[name] = {"value": value, "source": settings.sources[attr]}
    if key and env.output == "table":
        click.echo(data[key]["value"])
        return
    env.emit(data, ("KEY", "VALUE", "SOURCE"), [(k, v["value"], v["source"]) for k, v in data.items()])
