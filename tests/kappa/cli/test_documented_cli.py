"""The CLI as the documentation writes it (issue 16): each example, as printed, works."""

from __future__ import annotations

import json
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


def test_run_prints_values_for_one_output_and_streams_a_file_to_standard_output(iris_service, tmp_path):
    import json

    iris_service.save()
    inline = kappa("run", "IrisClassifier:latest", "predict", "--input", "[[5.1, 3.5, 1.4, 0.2]]")
    assert inline.exit_code == 0, inline.output
    assert json.loads(inline.output.strip().splitlines()[-1]) == [0]  # as documented: [0]
    data = tmp_path / "data.csv"
    rows = [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]] * 50
    data.write_text("a,b,c,d\n" + "\n".join(",".join(map(str, r)) for r in rows) + "\n")
    printed = CliRunner().invoke(
        cli, ["run", "IrisClassifier:latest", "predict", "--input-file", str(data), "--batch-size", "7"]
    )
    assert printed.exit_code == 0, printed.output
    assert json.loads(printed.stdout) == [0, 2] * 50  # one JSON array, written batch by batch
    assert not list(tmp_path.glob("*kappa*")) and sorted(p.name for p in tmp_path.iterdir()) == ["data.csv"]


def test_json_input_reaches_the_function_as_written_and_comes_back_as_returned(make_module, tmp_path):
    import json

    module = make_module(
        """
        import kappa
        from kappa.adapters import JsonInput

        class Echo(kappa.BentoService):
            @kappa.api(input=JsonInput(), batch=True)
            def same(self, items):
                assert all(isinstance(i, dict) for i in items)
                return items
        """
    )
    bundle = module.Echo().save_to_dir(str(tmp_path / "echo"))
    records = [{"a": 1}, {"b": {"c": [1, 2]}}, {"a": "x", "d": None}]
    data = tmp_path / "records.jsonl"
    data.write_text("\n".join(json.dumps(r) for r in records) + "\n")
    printed = CliRunner().invoke(cli, ["run", bundle, "same", "--input-file", str(data)])
    assert printed.exit_code == 0, printed.output
    assert json.loads(printed.stdout) == records  # no keys filled in, no JSON strings
    inline = kappa("run", bundle, "same", "--input", json.dumps(records))
    assert json.loads(inline.output.strip().splitlines()[-1]) == records


def test_a_bundle_saved_when_batch_defaulted_to_true_keeps_getting_batches(make_module, tmp_path):
    import yaml

    from kappa import load

    module = make_module(
        """
        import kappa
        from kappa.adapters import JsonInput

        class Old(kappa.BentoService):
            @kappa.api(input=JsonInput())
            def sizes(self, items):
                return [len(i) for i in items]
        """
    )
    bundle = Path(module.Old().save_to_dir(str(tmp_path / "old")))
    manifest = yaml.safe_load((bundle / "kappa.yml").read_text())
    assert manifest["apis"][0]["batch"] is False  # saved now: the documented default
    manifest["apis"][0]["batch"] = True  # as a bundle saved under the old default records it
    (bundle / "kappa.yml").write_text(yaml.safe_dump(manifest, sort_keys=False))
    assert load(str(bundle)).get_inference_api("sizes").batch is True
    printed = kappa("run", str(bundle), "sizes", "--input", '[{"a": 1, "b": 2}, {"c": 3}]')
    assert printed.exit_code == 0 and json.loads(printed.output.strip().splitlines()[-1]) == [2, 1]


def test_json_results_stay_values_when_a_row_of_their_batch_raised(make_module, tmp_path):
    module = make_module(
        """
        import kappa
        from kappa.adapters import JsonInput

        class Objects(kappa.BentoService):
            @kappa.api(input=JsonInput(), batch=True)
            def obj(self, items):
                if any(i.get("boom") for i in items):
                    raise RuntimeError("boom")
                return items
        """
    )
    bundle = module.Objects().save_to_dir(str(tmp_path / "objects"))
    printed = kappa("run", bundle, "obj", "--input", '[{"boom": true}, {"v": 1}]')
    assert json.loads(printed.output.strip().splitlines()[-2]) == [None, {"v": 1}]
    records = tmp_path / "ids.jsonl"
    records.write_text('{"id": 7, "v": 1}\n{"id": 7, "w": {"x": 2}}\n')
    with_ids = CliRunner().invoke(
        cli, ["run", bundle, "obj", "--input-file", str(records), "--id-column", "id"]
    )
    assert with_ids.exit_code == 0, with_ids.output
    assert json.loads(with_ids.stdout) == [{"v": 1}, {"w": {"x": 2}}]  # ids taken out, nothing added


def test_a_bad_error_rate_setting_fails_before_scoring(iris_service, tmp_path, monkeypatch):
    iris_service.save()
    data = tmp_path / "data.csv"
    data.write_text("a,b,c,d\n5.1,3.5,1.4,0.2\n")
    monkeypatch.setenv("KAPPA_RUN_MAX_ERROR_RATE", "lots")
    result = kappa("run", "IrisClassifier:latest", "predict", "--input-file", str(data), "--output-file",
                   str(tmp_path / "out/"))  # fmt: skip
    assert result.exit_code == 1 and "run.max_error_rate must be a number from 0 to 1" in result.output
    assert not (tmp_path / "out").exists()


def test_an_installed_bundle_never_shadows_a_standard_module():
    from kappa.bundle.templates import package_name

    assert package_name("IrisClassifier") == "IrisClassifier"
    assert package_name("json") == "kappa_bundle_json"
    assert package_name("my-model.v2") == "my_model_v2"
