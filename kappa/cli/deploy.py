"""Deploy commands: ``containerize``, ``pack-env`` and ``k8s``, each starting from a verified bundle."""

from __future__ import annotations

import shlex
from collections.abc import Iterator
from contextlib import contextmanager

import click

from kappa.cli._common import Environment, common_options, pass_env, user_errors


class RefusedError(click.ClickException):
    """A bundle that fails its digest, or an argument that cannot work: nothing was built."""

    exit_code = 2


@contextmanager
def refusing_bad_input() -> Iterator[None]:
    """Bad bundles and bad arguments exit 2 with one line; other failures exit 1."""
    from kappa.errors import BundleError, InputError
    from kappa.redact import redact

    try:
        yield
    except (BundleError, InputError) as exc:
        raise RefusedError(redact(str(exc))) from None


@click.command("containerize")
@click.argument("bundle")
@click.option("-t", "--tag", help="Image tag, [REGISTRY/]NAME[:TAG] (default: name:version, lower case).")
@click.option("--push", is_flag=True, help="docker push the image after building it.")
@common_options
@pass_env
def containerize_command(env: Environment, /, bundle: str, tag: str | None, push: bool) -> None:
    """Build a container image of BUNDLE (path, URL or NAME:VERSION), like `docker build` in its folder.

    Without docker on PATH, prints the Dockerfile's path and the exact build command (exit 0).
    """
    from kappa.deploy import containerize as c

    with user_errors():
        with refusing_bad_input():
            plan = c.plan_build(bundle, tag, env.settings().home)
        env.info(f"Dockerfile: {plan.dockerfile}")
        if not c.docker_available():
            env.info("docker is not on PATH; build the image where Docker runs with:")
            click.echo(shlex.join(plan.build_command))
            if push:
                click.echo(shlex.join(plan.push_command))
            return
        c.run_docker(plan.build_command, plan)
        if push:
            c.run_docker(plan.push_command, plan)
        click.echo(plan.tag)
