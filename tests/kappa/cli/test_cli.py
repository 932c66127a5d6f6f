"""The management CLI: list, get, delete, retrieve, import, export, info, config."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import yaml
from click.testing import CliRunner

from kappa.cli.main import cli


def kappa(*args: str, input: str | None = None):
    return CliRunner().invoke(cli, list(args), input=input, catch_exceptions=False)


@pytest.fixture
def saved(iris_service):
    iris_service.save(version="v1", labels={"framework": "sklearn", "stage": "qa"})
    iris_service.save(version="v2", labels={"framework": "sklearn", "stage": "prod"})
    return iris_service


def test_list_shows_the_expected_columns(repo_mode, saved):
    result = kappa("list")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].split() == ["MODEL_VERSION", "AGE", "APIS", "ARTIFACTS", "LABELS"]
    assert lines[1].startswith("IrisClassifier:v2")
    assert "predict<DataframeInput>" in lines[1]
    assert "model<SklearnModelArtifact>" in lines[1]
    assert "framework=sklearn, stage=prod" in lines[1]
    assert "second" in lines[1]


def test_list_filters_pages_and_formats(repo_mode, saved):
    data = json.loads(kappa("list", "--labels", "stage=qa", "-o", "json").output)
    assert [(d["name"], d["version"]) for d in data] == [("IrisClassifier", "v1")]
    data = yaml.safe_load(
        kappa("list", "IrisClassifier", "--limit", "1", "--offset", "1", "-o", "yaml").output
    )
    assert [d["version"] for d in data] == ["v1"]
    data = json.loads(kappa("list", "--order-by", "version", "--ascending-order", "-o", "json").output)
    assert [d["version"] for d in data] == ["v1", "v2"]
    bad = kappa("list", "--labels", "stage In (qa")
    assert bad.exit_code != 0 and "unbalanced parentheses" in bad.output and "Traceback" not in bad.output


def test_get_prints_full_metadata(repo_mode, saved):
    manifest = json.loads(kappa("get", "IrisClassifier:v1", "-o", "json").output)
    assert manifest["version"] == "v1"
    assert manifest["labels"] == {"framework": "sklearn", "stage": "qa"}
    assert manifest["artifacts"][0]["metadata"]["accuracy"] == 0.97
    assert manifest["apis"][0]["name"] == "predict"
    assert manifest["env"]["pip_packages"][0].startswith("kappa-engine[online]==")
    latest = yaml.safe_load(kappa("get", "IrisClassifier:latest").output)
    assert latest["version"] == "v2"
    location = kappa("get", "IrisClassifier:latest", "--print-location").output.strip()
    assert location == latest["uri"] and location.endswith("/IrisClassifier/v2")
    versions = kappa("get", "IrisClassifier", "--labels", "stage=prod").output.splitlines()
    assert len(versions) == 2 and versions[1].startswith("IrisClassifier:v2")
    missing = kappa("get", "IrisClassifier:v9")
    assert missing.exit_code == 1 and "not found" in missing.output and "Traceback" not in missing.output


def test_delete(repo_mode, saved):
    refused = kappa("delete", "IrisClassifier:v2")
    assert refused.exit_code == 1 and "without -y" in refused.output
    assert kappa("delete", "IrisClassifier:latest", "-y").exit_code == 1
    assert kappa("delete", "IrisClassifier:v2", "-y").exit_code == 0
    assert json.loads(kappa("get", "IrisClassifier:latest", "-o", "json").output)["version"] == "v1"
    assert kappa("delete", "IrisClassifier", "--all", "-y").exit_code == 0
    assert kappa("list").output.splitlines()[1:] == []


def test_retrieve_export_import(repo_mode, saved, tmp_path, monkeypatch):
    target = tmp_path / "copy"
    assert kappa("retrieve", "IrisClassifier:v1", "--target_dir", str(target)).exit_code == 0
    assert (target / "kappa.yml").exists()
    again = kappa("retrieve", "IrisClassifier:v1", "--target_dir", str(target))
    assert again.exit_code == 1 and "already exists" in again.output
    archive = tmp_path / "iris.tar.gz"
    assert kappa("export", "IrisClassifier:v2", str(archive)).exit_code == 0
    monkeypatch.setenv("KAPPA_HOME", str(tmp_path / "elsewhere"))
    monkeypatch.delenv("KAPPA_DB_URL", raising=False)
    monkeypatch.delenv("KAPPA_BASE_URL", raising=False)
    assert kappa("import", str(archive)).exit_code == 0
    assert kappa("import", str(target)).exit_code == 0
    listed = json.loads(kappa("list", "-o", "json").output)
    assert sorted(d["version"] for d in listed) == ["v1", "v2"]


def test_config_and_info(tmp_path, kappa_home):
    db = f"sqlite:///{tmp_path / 'team.db'}"
    assert kappa("config", "set", f"repository.db_url={db}").exit_code == 0
    assert kappa("config", "get", "repository.db_url").output.strip() == db
    data = json.loads(kappa("config", "get", "-o", "json").output)
    assert data["repository.db_url"]["source"] == str(kappa_home / "config.yaml")
    info = json.loads(kappa("info", "-o", "json").output)
    assert info["db_url"] == db and info["bundles"] == 0
    bad = kappa("config", "set", "repository.colour=blue")
    assert bad.exit_code == 1 and "unknown setting 'repository.colour'" in bad.output
    assert kappa("config", "set", "run.threads_per_worker=2").exit_code == 0
    assert kappa("config", "set", "repository.db_reconnect_seconds=2.5").exit_code == 0
    refused = ("run.threads_per_worker=0", "run.max_error_rate=7", "repository.db_reconnect_seconds=-1")
    for value in refused:  # refused, and nothing written
        bad = kappa("config", "set", value)
        assert bad.exit_code == 1 and "must be" in bad.output
    assert kappa("config", "get", "run.threads_per_worker").output.strip() == "2"
    assert kappa("config", "get", "repository.db_reconnect_seconds").output.strip() == "2.5"
    assert kappa("config", "unset", "repository.db_url").exit_code == 0
    assert json.loads(kappa("info", "-o", "json").output)["db_url_source"] == "default"


def test_passwords_are_hidden(monkeypatch):
    from kappa.settings import redact

    assert (
        redact("postgresql+psycopg://ana:s3cret@db:5432/kappa")
        == "postgresql+psycopg://ana:***@db:5432/kappa"
    )


def test_every_subcommand_has_help():
    for name in ["list", "get", "delete", "retrieve", "import", "export", "info", "config"]:
        result = kappa(name, "--help")
        assert result.exit_code == 0 and "Usage:" in result.output, name


def test_a_cli_call_that_loads_no_model_imports_no_data_stack(saved):
    code = (
        "import sys\nfrom kappa.cli.main import cli\n"
        "try:\n    cli(['list', '-q'], standalone_mode=False)\nfinally:\n"
        "    print('MODULES', ' '.join(sorted({m.split('.')[0] for m in sys.modules})))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    modules = set(out.stdout.split("MODULES", 1)[1].split())
    assert "sqlalchemy" in modules  # it did talk to the repository
    assert sorted(modules & {"pandas", "pyarrow", "numpy", "sklearn", "torch", "xgboost", "lightgbm"}) == []
    assert "IrisClassifier:v2" in out.stdout


HELD = """
import time
import kappa
from kappa.adapters import DataframeInput
from kappa.frameworks.pickle import PickleArtifact


class SlowToPickle:
    def __getstate__(self):
        time.sleep(60)
        return {}


@kappa.artifacts([PickleArtifact("model")])
class Held(kappa.BentoService):
    @kappa.api(input=DataframeInput(), batch=True)
    def predict(self, df):
        return [0] * len(df)
"""


def test_gc_removes_a_killed_save_and_nothing_else(repo_mode, saved, make_module):
    """A save killed (SIGKILL) mid-way leaves a pending row, never listed, and its staging folder
    (local files): `kappa gc` removes both once the save is older than --older-than; ready
    bundles stay."""
    import os
    import signal
    import time

    from kappa.repository import open_repository
    from kappa.repository.files import is_local, local_part

    module = make_module(HELD)
    save = f"import {module.__name__} as m; m.Held().pack('model', m.SlowToPickle()).save()"
    saving = subprocess.Popen(
        [sys.executable, "-c", save], env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    )
    repo = open_repository()

    def staged() -> list[str]:
        if not stranded or not is_local(stranded[0].uri):
            return []
        folder = local_part(stranded[0].uri)
        return [p.name for p in folder.parent.glob(f".{folder.name}.staging-*")]

    deadline = time.monotonic() + 60
    while not (stranded := repo.stranded(0)) or (repo_mode == "local" and not staged()):
        assert saving.poll() is None and time.monotonic() < deadline, "the save never began"
        time.sleep(0.05)
    time.sleep(0.5)  # into the model's pickling
    saving.send_signal(signal.SIGKILL)
    saving.wait()
    [record] = stranded
    assert record.name == "Held" and len(staged()) == (repo_mode == "local")

    young = kappa("gc", "-o", "json")  # 24 h by default: a save this young may still be running
    assert young.exit_code == 0 and json.loads(young.stdout) == []
    assert "no stranded saves begun over 1d ago" in young.stderr
    shown = json.loads(kappa("gc", "--older-than", "0", "--dry-run", "-o", "json").stdout)
    assert [(s["tag"], s["removed"]) for s in shown] == [(record.tag, False)]
    assert repo.stranded(0) == [record]
    removed = kappa("gc", "--older-than", "0s", "-o", "json")
    assert removed.exit_code == 0 and [r["tag"] for r in json.loads(removed.stdout)] == [record.tag]
    assert repo.stranded(0) == [] and staged() == []
    listed = json.loads(kappa("list", "-o", "json").stdout)
    assert sorted(d["version"] for d in listed) == ["v1", "v2"]
    assert kappa("get", "IrisClassifier:v1", "-o", "json").exit_code == 0
    assert json.loads(kappa("gc", "--older-than", "0", "-o", "json").stdout) == []
    for duration in ("soon", "1_000s", "inf", "-1h", "2w", "9" * 400 + "d"):
        bad = kappa("gc", "--older-than", duration)
        assert bad.exit_code == 2 and f"{duration!r} is not a duration; write e.g. 90s" in bad.output


def test_gc_of_a_save_still_running_makes_that_save_fail_not_vanish(kappa_home, make_module):
    """`kappa gc --older-than 0` while a save is still writing: the save cannot complete, says so,
    and leaves nothing listed or stranded."""
    import threading
    import time

    from kappa.errors import RepositoryError
    from kappa.repository import open_repository

    module = make_module(HELD.replace("time.sleep(60)", "time.sleep(2)"))
    outcome: list[BaseException | None] = []

    def save() -> None:
        try:
            module.Held().pack("model", module.SlowToPickle()).save()
            outcome.append(None)
        except BaseException as exc:  # noqa: BLE001 - what the save ended in is the test
            outcome.append(exc)

    saving = threading.Thread(target=save)
    saving.start()
    repo = open_repository()
    deadline = time.monotonic() + 30
    while not repo.stranded(0):
        assert saving.is_alive() and time.monotonic() < deadline, outcome
        time.sleep(0.02)
    removed = kappa("gc", "--older-than", "0", "-o", "json")
    assert removed.exit_code == 0 and [r["tag"].split(":")[0] for r in json.loads(removed.stdout)] == ["Held"]
    saving.join(timeout=30)
    assert isinstance(outcome[0], RepositoryError), outcome
    assert str(outcome[0]).startswith("the save of Held:") and "was discarded while it ran" in str(outcome[0])
    assert repo.stranded(0) == [] and repo.list("Held") == []


@pytest.mark.server
def test_gc_through_the_registry_server_is_one_clear_line(use_gamma):
    result = kappa("gc", "--dry-run")
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "kappa gc works on the repository's own database and files" in result.output
