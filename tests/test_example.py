"""`make run`'s job: the iris example trains, saves a bundle and scores the shipped data set."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pyarrow.csv as pacsv
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[1]


def test_iris_example_end_to_end(tmp_path, kappa_home):
    output = tmp_path / "predictions.parquet"
    run = subprocess.run(
        [sys.executable, "-m", "examples.iris.main", "--output", str(output)],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert run.returncode == 0, run.stderr
    assert f"predictions: {output}" in run.stdout
    scored = pq.read_table(output).to_pandas().sort_values("id")
    data = pacsv.read_csv(ROOT / "examples" / "iris" / "iris.csv").to_pandas().sort_values("id")
    assert list(scored["id"]) == list(data["id"])
    accuracy = (scored["prediction"].to_numpy() == data["species"].to_numpy()).mean()
    assert accuracy > 0.9
    assert list((kappa_home / "repository" / "IrisClassifier").iterdir())
