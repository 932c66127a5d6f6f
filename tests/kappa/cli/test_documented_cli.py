"""The CLI as the documentation writes it (issue 16): each example, as printed, works."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner

from kappa.cli.main import cli

KAPPA = str(Path(sys.executable).parent / "kappa")


def kappa(*args: str):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def test_get_of_an_unknown_name_is_a_one_line_error(iris_service):
    missing = kappa("get", "NoSuchName")
    assert missing.exit_code == 1
    assert (
        missing.output.strip() == "Error: no bundle named NoSuchName is in the repository; see `kappa list`"
    )
    iris_service.save(version="v1", labels={"stage": "qa"})
    assert kappa("get", "IrisClassifier").exit_code == 0
    unmatched = kappa("get", "IrisClassifier", "--labels", "stage=prod")
    assert unmatched.exit_code == 1 and "no version of IrisClassifier matches" in unmatched.output


def test_delete_says_it_once(iris_service, kappa_home):
    iris_service.save(version="v1")
    result = subprocess.run(
        [KAPPA, "delete", "IrisClassifier:v1", "-y"],
        capture_output=True, text=True, env={**os.environ, "KAPPA_HOME": str(kappa_home)},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert (result.stdout + result.stderr).count("deleted IrisClassifier:v1") == 1


def test_retrieve_defaults_to_the_current_folder_and_never_overwrites(iris_service, tmp_path, monkeypatch):
    iris_service.save(version="v1")
    monkeypatch.chdir(tmp_path)
    first = kappa("retrieve", "IrisClassifier")
    assert first.exit_code == 0, first.output
    assert (tmp_path / "IrisClassifier-v1" / "kappa.yml").is_file()
    again = kappa("retrieve", "IrisClassifier:v1")
    assert again.exit_code == 1 and "already exists" in again.output


def test_auto_pip_dependencies_is_the_documented_alias(make_module):
    module = make_module(
        """
        import kappa
        from kappa.adapters import DataframeInput

        @kappa.env(auto_pip_dependencies=True)
        class Documented(kappa.BentoService):
            @kappa.api(input=DataframeInput(), batch=True)
            def predict(self, df):
                return df.sum(axis=1)
        """
    )
    assert module.Documented().env.infer_pip_packages is True


def test_list_help_says_what_not_equal_selects():
    text = " ".join(kappa("list", "--help").output.split())
    assert "k!=v and k NotIn (...) need the label k" in text
