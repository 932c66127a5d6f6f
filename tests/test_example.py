"""`make run`'s job: the iris example trains and saves a bundle, `kappa run` scores the shipped data."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

ROOT = Path(__file__).resolve().parents[1]
KAPPA = str(Path(sys.executable).parent / "kappa")


@pytest.mark.slow
def test_iris_example_end_to_end(tmp_path, kappa_home):
    train = subprocess.run(
        [sys.executable, "-m", "examples.iris.main"], cwd=ROOT, capture_output=True, text=True
    )
    assert train.returncode == 0, train.stderr
    tag = train.stdout.strip()
    assert tag.startswith("IrisClassifier:")
    output, report = tmp_path / "predictions.parquet", tmp_path / "report.json"
    score = subprocess.run(
        [
            KAPPA,
            "run",
            "IrisClassifier:latest",
            "predict",
            "--input-file",
            "examples/iris/iris.csv",
            "--id-column",
            "id",
            "--output-file",
            str(output),
            "--report",
            str(report),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert score.returncode == 0, score.stderr
    scored = pq.read_table(output).to_pandas().sort_values("id")
    data = pacsv.read_csv(ROOT / "examples" / "iris" / "iris.csv").to_pandas().sort_values("id")
    assert list(scored["id"]) == list(data["id"])
    assert (scored["prediction"].to_numpy() == data["species"].to_numpy()).mean() > 0.9
    facts = json.loads(report.read_text())
    assert facts["bundle"] == tag and facts["rows_in"] == facts["rows_out"] == 150
