"""The README's code blocks, run or checked as printed, so the README cannot drift from the code.

* ```python blocks run: the first is written as ``iris_service.py`` (as its comment says) and
  the second runs beside it with a ``trained_model``; the Spark, Dask and Airflow blocks need
  a cluster or a scheduler, so each of their calls into Kappa is bound to the real signature.
* ```console blocks run line by line (``kappa ...``) in a fresh repository holding the
  README's service, next to ``iris.csv``; each must succeed, with no row in error.
* ```text blocks are synopses: every ``--option`` of a ``kappa SUB`` or ``spark_jobs/score.py``
  line must be one that command's ``--help`` lists.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import json
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
KAPPA = str(Path(sys.executable).parent / "kappa")


def blocks(kind: str) -> list[str]:
    found = re.findall(r"^```(\w*)\n(.*?)^```", README.read_text(), flags=re.M | re.S)
    return [body for info, body in found if info == kind]


def commands(block: str) -> list[str]:
    """The block's lines, continuation lines joined, comments dropped."""
    joined = block.replace("\\\n", " ")
    return [line.split("  #")[0].strip() for line in joined.splitlines() if line.strip()]


def test_every_block_says_what_it_is():
    found = re.findall(r"^```(\w*)$", README.read_text(), flags=re.M)
    infos = found[0::2]  # opening fences
    assert all(info in ("python", "console", "text") for info in infos), infos


@pytest.fixture
def readme_service(tmp_path, monkeypatch, iris):
    """The README's first two Python blocks, run as written."""
    service_block, usage_block = blocks("python")[:2]
    assert service_block.startswith("# iris_service.py")
    (tmp_path / "iris_service.py").write_text(service_block)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.chdir(tmp_path)
    namespace = {"trained_model": iris[2]}
    from tests.servers import free_port

    usage_block = usage_block.replace("port=5000", f"port={free_port()}")  # 5000 may be taken here
    try:
        exec(compile(usage_block, "README.md (usage block)", "exec"), namespace)  # noqa: S102
    finally:
        service = namespace.get("svc")
        if service is not None:
            service.stop_dev_server()
        sys.modules.pop("iris_service", None)
    return namespace


def test_the_python_blocks_run(readme_service, kappa_home):
    loaded = readme_service["svc2"]
    assert loaded.name == "IrisClassifier" and loaded.version
    assert loaded.predict([[5.1, 3.5, 1.4, 0.2]]).tolist() == [0]
    assert (Path("bundles") / "iris" / "kappa.yml").is_file()


@pytest.mark.slow
def test_the_console_blocks_run_as_printed(readme_service, kappa_home, tmp_path):
    shutil.copyfile(ROOT / "examples" / "iris" / "iris.csv", tmp_path / "iris.csv")
    ran = 0
    for block in blocks("console"):
        for line in commands(block):
            words = shlex.split(line)
            assert words[0] == "kappa", line
            result = subprocess.run([KAPPA, *words[1:]], capture_output=True, text=True, cwd=tmp_path)
            assert result.returncode == 0, (line, result.stderr)
            assert " 0 in error" in result.stderr or "--output-file" not in words, (line, result.stderr)
            if "--output-file" not in words:
                printed = json.loads(result.stdout)
                assert printed and all(isinstance(v, int) for v in printed), (line, result.stdout)
            ran += 1
    assert ran >= 3


def _help(words: list[str]) -> str:
    if words[0] == "kappa":
        import click

        from kappa.cli.main import cli

        sub: list[str] = []  # the (sub)command path: `kappa gamma token create` -> 3 words
        command: click.Command = cli
        for word in words[1:]:
            if word.startswith("-") or not isinstance(command, click.Group):
                break
            found = command.get_command(click.Context(command), word)
            if found is None:
                break
            sub.append(word)
            command = found
        return CliRunner().invoke(cli, [*sub, "--help"]).output
    if words[:2] == ["spark-submit", "spark_jobs/score.py"]:
        from kappa_batch.engines import spark_job

        with pytest.raises(SystemExit):
            spark_job.main(["--help"])
        return ""
    return ""


def test_every_option_in_a_synopsis_exists(capsys):
    from kappa_batch.engines import spark_job

    checked = 0
    for block in blocks("text"):
        for line in commands(block):
            words = line.replace("[", " ").replace("]", " ").replace("|", " ").split()
            if not words or words[0] not in ("kappa", "spark-submit"):
                continue
            if words[0] == "spark-submit":
                with pytest.raises(SystemExit):
                    spark_job.main(["--help"])
                text = capsys.readouterr().out
                words = words[words.index("spark_jobs/score.py") :]  # before it: spark-submit's own
            else:
                text = _help(words)
            assert "Usage" in text or "usage" in text, line
            for option in (w.split("=")[0] for w in words if w.startswith("--")):
                assert re.search(rf"(^|[\s,/]){re.escape(option)}\b", text, flags=re.M), (option, line)
                checked += 1
    assert checked >= 20


def _calls(block: str) -> list[ast.Call]:
    return [node for node in ast.walk(ast.parse(block)) if isinstance(node, ast.Call)]


@pytest.mark.parametrize("which", ["spark", "dask"])
def test_the_cluster_blocks_call_kappa_as_it_is(which):
    block = next(b for b in blocks("python") if f"kappa_batch import {which}" in b)
    alias = re.search(rf"from kappa_batch import {which} as (\w+)", block)[1]
    module = importlib.import_module(f"kappa_batch.{which}")
    bound = 0
    for call in _calls(block):
        func = call.func
        if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name) and func.value.id == alias:
            signature = inspect.signature(getattr(module, func.attr))
            signature.bind(*[None] * len(call.args), **{k.arg: None for k in call.keywords if k.arg})
            bound += 1
    assert bound >= 1


def test_the_airflow_block_names_real_operator_arguments():
    """Checked against the operators' source, so this test needs no Airflow import."""
    block = next(b for b in blocks("python") if "KappaScoreOperator(" in b)
    source = ast.parse((ROOT / "kappa_batch" / "airflow.py").read_text())
    accepted: dict[str, set[str]] = {}
    for node in ast.walk(source):
        if isinstance(node, ast.ClassDef):
            for item in node.body:
                if isinstance(item, ast.FunctionDef) and item.name == "__init__":
                    names = [a.arg for a in item.args.args + item.args.kwonlyargs]
                    accepted[node.name] = {*names, "task_id"}  # task_id: BaseOperator's
    for call in _calls(block):
        if isinstance(call.func, ast.Name) and call.func.id in accepted:
            unknown = {k.arg for k in call.keywords} - accepted[call.func.id]
            assert not unknown, (call.func.id, unknown)
