"""The console script a pip-installed bundle provides (named after its service).

``IrisClassifier predict --input '[[5.1, 3.5, 1.4, 0.2]]'`` prints the results as
JSON; ``IrisClassifier --info`` prints the manifest summary.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence


def main(bundle_dir: str, argv: Sequence[str] | None = None) -> int:
    from pathlib import Path

    import click

    from kappa.adapters._json import dumps
    from kappa.bundle.load import load_from_dir
    from kappa.bundle.manifest import load_manifest
    from kappa.errors import KappaError

    @click.command(help=f"Run the APIs of the Kappa bundle in {bundle_dir}.")
    @click.argument("api_name", required=False)
    @click.option("--input", "input_text", help="The input batch as JSON, e.g. '[[5.1, 3.5, 1.4, 0.2]]'.")
    @click.option("--info", is_flag=True, help="Print the bundle's name, version and APIs.")
    def command(api_name: str | None, input_text: str | None, info: bool) -> None:
        try:
            manifest = load_manifest(Path(bundle_dir))
            if info or api_name is None:
                click.echo(
                    json.dumps(
                        {
                            "name": manifest.name,
                            "version": manifest.version,
                            "apis": [a.name for a in manifest.apis],
                        },
                        indent=2,
                    )
                )
                return
            if input_text is None:
                raise click.UsageError("give the input with --input JSON")
            try:
                payload = json.loads(input_text)
            except ValueError as exc:
                raise click.BadParameter(f"not valid JSON: {exc}", param_hint="--input") from None
            service = load_from_dir(Path(bundle_dir))
            api = service.get_inference_api(api_name)
            outcome = api.infer(api.input_adapter.to_arrow(payload))
            click.echo(dumps(api.output_adapter.to_json_rows(outcome.outputs)))
            for error in outcome.errors:
                click.echo(f"row {error.row}: {error.status} {error.message}", err=True)
        except KappaError as exc:
            raise click.ClickException(str(exc)) from None

    from kappa.cli._common import exit_code_of

    return exit_code_of(command, list(argv) if argv is not None else sys.argv[1:])
