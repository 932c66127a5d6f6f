"""Scoring-run lineage: every run's report lands in the repository or the registry server;
a registry that is down never fails a run (the report waits in the outbox)."""

from __future__ import annotations

import json
import logging

import pandas as pd
import pytest
from click.testing import CliRunner

from kappa.cli.main import cli


@pytest.fixture
def scored_input(tmp_path, iris):
    frame = pd.DataFrame(iris[0][:40], columns=["a", "b", "c", "d"])
    frame.insert(0, "id", range(40))
    path = tmp_path / "in.parquet"
    frame.to_parquet(path)
    return path


def _run(ref, source, target, env=None):
    args = [
        "run",
        ref,
        "predict",
        "--input-file",
        str(source),
        "--id-column",
        "id",
        "--output-file",
        str(target),
    ]
    return CliRunner(env=env).invoke(cli, args)


def _runs(*args, env=None):
    result = CliRunner(env=env).invoke(cli, ["runs", *args, "-o", "json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def test_a_local_run_is_recorded_without_a_registry(iris_service, scored_input, tmp_path):
    iris_service.save()
    result = _run("IrisClassifier:latest", scored_input, tmp_path / "out.parquet")
    assert result.exit_code == 0, result.output
    (run,) = _runs("list", "IrisClassifier")
    assert run["bundle"] == f"IrisClassifier:{iris_service.version}"
    assert run["digest"] == iris_service.manifest.digest
    assert (run["rows_in"], run["rows_out"], run["rows_error"], run["status"]) == (40, 40, 0, "succeeded")
    assert run["output"].endswith("out.parquet") and run["engine"] == "local"
    assert run["started_at"] <= run["finished_at"]
    assert _runs("get", run["run_id"]) == run
    missing = CliRunner().invoke(cli, ["runs", "get", "run-nothing-here"])
    assert missing.exit_code != 0 and "no scoring run" in missing.output


@pytest.mark.server
def test_runs_go_to_the_registry_and_wait_while_it_is_down(
    use_gamma, iris_service, scored_input, tmp_path, caplog
):
    iris_service.save()
    tag = f"IrisClassifier:{iris_service.version}"
    assert _run(tag, scored_input, tmp_path / "a.parquet").exit_code == 0
    recorded = _runs("list", "IrisClassifier")
    assert tag in [r["bundle"] for r in recorded]
    first = next(r for r in recorded if r["bundle"] == tag)
    # the registry is down: the run still succeeds, with one warning, and the report waits
    folder = iris_service._bundle_path  # the bundle as saved (a folder path needs no registry)
    down = {"KAPPA_GAMMA_URL": "http://127.0.0.1:9"}
    with caplog.at_level(logging.WARNING):
        result = _run(folder, scored_input, tmp_path / "b.parquet", env=down)
    assert result.exit_code == 0, result.output
    warnings = [r for r in caplog.records if "waits in" in r.getMessage()]
    assert len(warnings) == 1 and "cannot reach the registry" in warnings[0].getMessage()
    from kappa.settings import KappaSettings

    outbox = KappaSettings.load().home / "gamma" / "outbox"
    assert len(list(outbox.glob("*.json"))) == 1
    # back up: the next listing sends what waited
    later = _runs("list", "IrisClassifier", "--limit", "100")
    assert not list(outbox.glob("*.json"))
    outputs = {r["output"] for r in later if r["bundle"] == tag}
    assert {first["output"], str(tmp_path / "b.parquet")} <= outputs
