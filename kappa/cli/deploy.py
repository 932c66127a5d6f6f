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


@click.command("k8s")
@click.argument("bundle")
@click.option("--image", required=True, help="The bundle's image (see `kappa containerize`).")
@click.option("--replicas", type=click.IntRange(min=1), default=2, show_default=True, help="Serving pods.")
@click.option(
    "--max-replicas", type=click.IntRange(min=1), default=8, show_default=True, help="Autoscaler cap."
)
@click.option("--namespace", help="Namespace of every object (default: kubectl's).")
@click.option("--cpu", default="1", show_default=True, help="CPU request per pod.")
@click.option("--memory", default="1Gi", show_default=True, help="Memory request and limit per pod.")
@click.option("--api", help="API the batch Job and the Spark application score (default: the first).")
@click.option(
    "--input-file", "input_url", default="/data/input", show_default=True, help="Batch input (path or URL)."
)
@click.option("--output-file", "output_url", default="/data/output", show_default=True, help="Batch output.")
@click.option("--schedule", default="0 2 * * *", show_default=True, help="CronJob schedule.")
@click.option(
    "--executors", type=click.IntRange(min=1), default=2, show_default=True, help="Spark executors."
)
@click.option(
    "-d",
    "--output-dir",
    type=click.Path(file_okay=False),
    help="Write one file per workload here (else stdout).",
)
@common_options
@pass_env
def k8s_command(
    env: Environment,
    /,
    bundle: str,
    image: str,
    replicas: int,
    max_replicas: int,
    namespace: str | None,
    cpu: str,
    memory: str,
    api: str | None,
    input_url: str,
    output_url: str,
    schedule: str,
    executors: int,
    output_dir: str | None,
) -> None:
    """Kubernetes manifests for BUNDLE's image: serving (Deployment, Service, autoscaler, disruption
    budget), a batch Job and CronJob, and a Spark operator SparkApplication."""
    from pathlib import Path

    from kappa.deploy import k8s
    from kappa.deploy.bundles import verified_bundle

    with user_errors():
        with refusing_bad_input():
            verified = verified_bundle(bundle)
            options = k8s.K8sOptions(
                image=image,
                replicas=replicas,
                max_replicas=max(max_replicas, replicas),
                namespace=namespace,
                cpu=cpu,
                memory=memory,
                api=api,
                input=input_url,
                output=output_url,
                schedule=schedule,
                executors=executors,
            )
            files = k8s.manifests(verified.manifest, options)
        if output_dir is None:
            click.echo(k8s.render([o for objects in files.values() for o in objects]), nl=False)
            return
        folder = Path(output_dir)
        folder.mkdir(parents=True, exist_ok=True)
        for name, objects in files.items():
            (folder / name).write_text(k8s.render(objects))
            click.echo(str(folder / name))


@click.command("pack-env")
@click.argument("bundle")
@click.option(
    "-o",
    "--output-file",
    "output",
    required=True,
    type=click.Path(dir_okay=False),
    help="The archive: env.tar.gz (or .tgz, .zip: what spark-submit --archives unpacks).",
)
@click.option(
    "--extras",
    default="",
    help="Extras to add, comma-separated: spark, dask, airflow (e.g. dask for Dask workers).",
)
@click.option("--overwrite", is_flag=True, help="Replace an existing archive.")
@click.option("--compress-level", type=click.IntRange(0, 9), default=4, show_default=True)
@pass_env  # no common -o: here it names the archive, as in `kappa pack-env NAME:VERSION -o env.tar.gz`
def pack_env_command(
    env: Environment, /, bundle: str, output: str, extras: str, overwrite: bool, compress_level: int
) -> None:
    """Pack a relocatable Python environment for BUNDLE's executors: its pinned packages and Kappa.

    \b
    spark-submit --archives env.tar.gz#env --conf spark.pyspark.python=./env/bin/python \\
        spark_jobs/score.py --bundle BUNDLE ...

    The machines that unpack it need the Python it was built with, at the same path.
    """
    from pathlib import Path

    from kappa.deploy.packenv import pack_env

    wanted = [e.strip() for e in extras.split(",") if e.strip()]
    with user_errors():
        with refusing_bad_input():
            packed = pack_env(bundle, Path(output), wanted, overwrite, compress_level)
        env.info(f"{packed.packages} packages, {packed.size / 1e6:.1f} MB, for Python at {packed.python}")
        click.echo(str(packed.path))
