"""Prediction and feedback logging: shards a reader (and `kappa run`) can use, written beside
serving, never in its way."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from kappa.cli.main import cli

pytestmark = pytest.mark.server
KAPPA = str(Path(sys.executable).parent / "kappa")

SERVICE = """
import kappa
from kappa.adapters import DataframeInput

class Logged(kappa.BentoService):
    @kappa.api(input=DataframeInput(columns=["x", "y"], dtype="float64"), batch=True)
    def predict(self, df):
        return [x * 10 + y for x, y in zip(df["x"], df["y"])]
"""


def _call(url, path, payload, headers=None):
    request = urllib.request.Request(
        url + path, json.dumps(payload).encode(), {"Content-Type": "application/json", **(headers or {})}
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read()), dict(response.headers)
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null"), dict(exc.headers)


def _serve(bundle, *args, env=None):
    from tests.servers import free_port, wait_for_port

    port = free_port()
    process = subprocess.Popen(
        [KAPPA, "serve", bundle, "--port", str(port), *args],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
    )  # fmt: skip
    wait_for_port(port, timeout=60, process=process)
    return f"http://127.0.0.1:{port}", process


def _stop(process) -> str:
    process.send_signal(signal.SIGTERM)
    return process.communicate(timeout=90)[0]


@pytest.fixture
def bundle(make_module, tmp_path):
    return make_module(SERVICE).Logged().save_to_dir(str(tmp_path / "bundle"))


def test_predictions_and_feedback_join_and_feed_kappa_run(bundle, tmp_path):
    logs = tmp_path / "logs"
    url, process = _serve(bundle, "--log-predictions", str(logs))
    try:
        answers = []
        for i in range(30):
            rows = [[float(i), 1.0], [float(i), 2.0]]
            status, body, headers = _call(url, "/predict", rows, {"X-Request-Id": f"req-{i}"})
            assert (status, body) == (200, [i * 10 + 1.0, i * 10 + 2.0])
            answers.append(headers["x-request-id"])
        assert _call(url, "/predict", [["not a number", 1]])[0] == 400  # no rows: not a prediction
        assert _call(url, "/predict", [[-1.0, 1.0]])[0] == 200
        for i in range(2):  # the V2 route logs the same way
            tensors = [{"name": n, "datatype": "FP64", "shape": [2], "data": [5.0 + i, 6.0]} for n in "xy"]
            status, body, _ = _call(
                url, "/v2/models/Logged/infer", {"inputs": tensors}, {"X-Request-Id": f"v2-{i}"}
            )
            assert status == 200 and body["outputs"][0]["data"] == [(5.0 + i) * 11, 66.0]
        for i in range(0, 30, 3):
            assert _call(url, "/feedback", {"request_id": f"req-{i}", "label": i % 2})[0] == 202
        assert _call(url, "/feedback", {"label": 1})[0] == 400
    finally:
        log = _stop(process)  # SIGTERM: the queued records are written before the process leaves
    assert "Traceback" not in log
    predictions = pd.concat(
        [pq.read_table(p).to_pandas() for p in sorted((logs / "predictions").glob("*.parquet"))]
    )
    ok = predictions[predictions["_request_id"].str.startswith("req-")]
    assert len(ok) == 60 and set(ok["_request_id"]) == {f"req-{i}" for i in range(30)}
    assert (ok["_output"] == ok["x"] * 10 + ok["y"]).all()  # the answer, in its own Arrow type
    import yaml

    manifest = yaml.safe_load((Path(bundle) / "kappa.yml").read_text())
    assert set(ok["_version"]) == {f"{manifest['name']}:{manifest['version']}"}
    assert len(predictions) == 65 and set(predictions["_status"]) == {200}
    v2 = predictions[predictions["_request_id"].str.startswith("v2-")]
    assert sorted(v2["_output"]) == [55.0, 66.0, 66.0, 66.0] and set(v2["_version"]) == set(ok["_version"])
    feedback = pd.concat([pq.read_table(p).to_pandas() for p in (logs / "feedback").glob("*.parquet")])
    joined = ok.merge(feedback, on="_request_id")
    assert sorted(set(joined["_request_id"])) == sorted(f"req-{i}" for i in range(0, 30, 3))
    assert not list(logs.rglob(".*"))  # every shard whole: none left under its temporary name
    # the logs are the next model's scoring data
    result = CliRunner().invoke(
        cli, ["run", bundle, "predict", "--input-file", str(logs / "predictions"), "--output-file",
              str(tmp_path / "rescored.parquet"), "-o", "json"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["rows_in"] == 65


def test_a_sink_that_cannot_be_written_drops_and_counts_but_fails_no_request(bundle, tmp_path):
    import time

    url, process = _serve(bundle, "--log-predictions", str(tmp_path / "logs"), "--log-flush-seconds", "0.2")
    try:
        # the store goes away under the server: its folder is replaced by a file
        (tmp_path / "logs" / "predictions").rename(tmp_path / "moved")
        (tmp_path / "logs" / "predictions").write_text("in the way")
        statuses = [_call(url, "/predict", [[1.0, 2.0]])[0] for _ in range(50)]
        assert statuses == [200] * 50
        deadline = time.monotonic() + 10
        line = 'kappa_prediction_log_dropped_total{log="predictions"} 50.0'
        while line not in urllib.request.urlopen(url + "/metrics", timeout=10).read().decode():
            assert time.monotonic() < deadline, "the dropped rows were never counted"
            time.sleep(0.2)
    finally:
        log = _stop(process)
    assert log.count("logged row(s): cannot write") == 1  # one warning, not one per shard
