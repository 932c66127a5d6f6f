"""``kappa serve`` started for real on 127.0.0.1 and called over HTTP."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pandas as pd
import pytest

pytestmark = pytest.mark.server
KAPPA = str(Path(sys.executable).parent / "kappa")
FEATURES = ["sepal_length", "sepal_width", "petal_length", "petal_width"]

SERVICE = """
import time

import kappa
from kappa.adapters import DataframeInput, FileInput, JsonInput, JsonOutput
from kappa.frameworks.sklearn import SklearnModelArtifact
from kappa.types import InferenceError, InferenceResult

@kappa.web_static_content("{web}")
@kappa.artifacts([SklearnModelArtifact("model")])
class OnlineIris(kappa.BentoService):
    @kappa.api(input=DataframeInput(columns={features}), batch=True)
    def predict(self, df):
        predictions = self.artifacts.model.predict(df.to_numpy())
        return [
            InferenceError(http_status=400, err_msg="sepal_length must not be negative") if x < 0 else int(p)
            for x, p in zip(df["sepal_length"], predictions)
        ]

    @kappa.api(input=DataframeInput(columns={features}), batch=True, mb_max_latency=300)
    def slow(self, df):
        time.sleep(0.05 + 0.0005 * len(df))
        return self.artifacts.model.predict(df.to_numpy())

    @kappa.api(input=JsonInput(), output=JsonOutput(), batch=True)
    def echo(self, items):
        return [{{"got": item}} for item in items]

    @kappa.api(input=JsonInput(), batch=True)
    def same(self, items):
        return items

    @kappa.api(input=JsonInput(), batch=True, mb_max_latency=2000)
    def negotiate(self, items, tasks):
        time.sleep(0.02)  # long enough for concurrent requests to share batches
        results = []
        for item, task in zip(items, tasks):
            if task.http_headers.get("Accept") == "application/json":
                results.append(InferenceResult(data={{"echo": item}}, http_status=200,
                                               http_headers={{"X-Item": str(item)}}))
            else:
                results.append(InferenceError(err_msg="application/json output only", http_status=406))
        return results

    @kappa.api(input=DataframeInput(), batch=True)
    def loose(self, df):
        return [len(df.columns)] * len(df)

    @kappa.api(input=JsonInput(), batch=True)
    def busy(self, items):
        return [InferenceError(http_status=503, err_msg="warming up") if i == "wait" else
                InferenceResult(data=i, http_headers={{"X-Bad": "a\\r\\nb"}}) if i == "crlf" else
                InferenceResult(data=i, http_headers={{"Content-Length": "1", "X-Ok": 7}}) for i in items]

    @kappa.api(input=JsonInput(), batch=True)
    def boom(self, items):
        raise RuntimeError("connect to postgresql://svc:not-for-clients@db failed")

    @kappa.api(input=FileInput(), batch=True)
    def size(self, files):
        return [len(f.read() if hasattr(f, "read") else f) for f in files]
"""


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    root = tmp_path_factory.mktemp("online_svc")
    web = root / "web"
    web.mkdir()
    (web / "index.html").write_text("<h1>iris demo</h1>")
    (web / "app.js").write_text("console.log('hi')")
    (root / "online_iris_service.py").write_text(SERVICE.format(web=web, features=FEATURES))
    sys.path.insert(0, str(root))
    try:
        import online_iris_service
    finally:
        sys.path.remove(str(root))
    X, y = load_iris(return_X_y=True)
    svc = online_iris_service.OnlineIris().pack("model", LogisticRegression(max_iter=1000).fit(X, y))
    path = svc.save_to_dir(str(tmp_path_factory.mktemp("bundle") / "iris"))
    sys.modules.pop("online_iris_service", None)
    return path


class Server:
    def __init__(self, bundle: str, *args: str) -> None:
        from tests.servers import free_port, wait_for_port

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process = subprocess.Popen(
            [KAPPA, "serve", bundle, "--port", str(self.port), *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        wait_for_port(self.port, timeout=60, process=self.process)
        deadline = time.monotonic() + 60
        while self.get("/readyz")[0] != 200:
            assert time.monotonic() < deadline, "the server never became ready"
            time.sleep(0.1)

    def request(self, path: str, body: bytes | None = None, content_type: str = "application/json",
                headers: dict[str, str] | None = None) -> tuple[int, bytes, dict[str, str]]:  # fmt: skip
        request = urllib.request.Request(
            self.url + path, data=body, method="POST" if body is not None else "GET",
            headers={"Content-Type": content_type, **(headers or {})} if body is not None else {},
        )  # fmt: skip
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return response.status, response.read(), dict(response.headers)
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read(), dict(exc.headers)

    def get(self, path: str) -> tuple[int, bytes]:
        try:
            status, body, _ = self.request(path)
        except OSError:
            return 0, b""
        return status, body

    def post(self, path: str, payload: object) -> tuple[int, object]:
        status, body, _ = self.request(path, json.dumps(payload).encode())
        return status, json.loads(body)

    def stop(self) -> str:
        if self.process.poll() is None:
            self.process.terminate()
        out, _ = self.process.communicate(timeout=60)
        return out


@pytest.fixture(scope="module")
def server(bundle):
    running = Server(bundle)
    yield running
    running.stop()


@pytest.fixture(scope="module")
def iris_rows():
    from sklearn.datasets import load_iris

    frame = load_iris(as_frame=True).frame.iloc[:, :4]
    frame.columns = FEATURES
    return frame


def test_online_predictions_equal_kappa_run(server, bundle, iris_rows, tmp_path):
    source = tmp_path / "iris.csv"
    iris_rows.to_csv(source, index=False)
    out = tmp_path / "out.parquet"
    result = subprocess.run(
        [KAPPA, "run", bundle, "predict", "--input-file", str(source), "--output-file", str(out)],
        capture_output=True, text=True,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    offline = pd.read_parquet(out).sort_values("_row")["prediction"].tolist()
    rows = iris_rows.to_numpy().tolist()
    assert server.post("/predict", rows) == (200, offline)  # rows, as `kappa run --input` takes
    assert server.post("/predict", iris_rows.to_dict(orient="records")) == (200, offline)
    assert server.post("/predict", json.loads(iris_rows.to_json(orient="split", index=False))) == (
        200,
        offline,
    )
    status, body, _ = server.request("/predict", iris_rows.to_csv(index=False).encode(), "text/csv")
    assert (status, json.loads(body)) == (200, offline)
    one_by_one = [server.post("/predict", [row])[1][0] for row in rows[:20]]
    assert one_by_one == offline[:20]


def test_serve_a_bundle_from_the_registry(server, bundle, iris_rows, use_gamma):
    """`kappa serve NAME:latest` with only the registry's URL and a token."""
    from click.testing import CliRunner

    from kappa.cli.main import cli

    imported = CliRunner().invoke(cli, ["import", bundle, "-o", "json"])
    assert imported.exit_code == 0, imported.output
    version = json.loads(imported.stdout)["version"]
    remote = Server("OnlineIris:latest")
    try:
        rows = iris_rows.to_numpy().tolist()[:10]
        assert remote.post("/predict", rows) == server.post("/predict", rows)
        assert json.loads(remote.get("/metadata")[1])["version"] == version
    finally:
        remote.stop()


def test_json_file_and_v2_endpoints(server, iris_rows):
    assert server.post("/echo", {"a": [1, 2]}) == (200, [{"got": {"a": [1, 2]}}])
    status, body, _ = server.request("/size", b"\x00" * 1234, "application/octet-stream")
    assert (status, json.loads(body)) == (200, [1234])
    boundary = "kappaboundary"
    form = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="a.bin"\r\n'
        f"Content-Type: application/octet-stream\r\n\r\n{'x' * 77}\r\n--{boundary}--\r\n"
    ).encode()
    status, body, _ = server.request("/size", form, f"multipart/form-data; boundary={boundary}")
    assert (status, json.loads(body)) == (200, [77])
    assert server.get("/v2/health/live")[0] == 200 and server.get("/v2/health/ready")[0] == 200
    status, meta = server.get("/v2/models/OnlineIris")
    assert status == 200 and [i["name"] for i in json.loads(meta)["inputs"]] == FEATURES
    tensor = {
        "name": "x",
        "shape": [2, 4],
        "datatype": "FP64",
        "data": iris_rows.iloc[[0, 100]].to_numpy().ravel().tolist(),
    }
    status, body = server.post("/v2/models/OnlineIris/infer", {"id": "r1", "inputs": [tensor]})
    assert status == 200 and body["id"] == "r1"
    assert (
        body["outputs"][0]["data"] == server.post("/predict", iris_rows.iloc[[0, 100]].to_numpy().tolist())[1]
    )
    assert server.post("/v2/models/Other/infer", {"inputs": [tensor]})[0] == 404
    assert server.post("/v2/models/OnlineIris/infer", {"inputs": "nope"})[0] == 400
    wrong_type = {**tensor, "datatype": "BYTES", "data": list(range(8))}  # numbers as strings: 400, not 500
    status, body = server.post("/v2/models/OnlineIris/infer", {"inputs": [wrong_type]})
    assert status == 400 and "datatype" in body["error"]
    status, body, _ = server.request("/v2/models/OnlineIris/infer", b"[" * 100_000, "application/json")
    assert status == 400  # nested past the parser's depth
    version = json.loads(server.get("/metadata")[1])["version"]
    status, body = server.post(f"/v2/models/OnlineIris/versions/{version}/infer", {"inputs": [tensor]})
    assert status == 200 and body["model_version"] == version
    assert server.post("/v2/models/OnlineIris/versions/not-served/infer", {"inputs": [tensor]})[0] == 404


def test_service_routes(server):
    status, body = server.get("/metadata")
    meta = json.loads(body)
    assert status == 200 and meta["name"] == "OnlineIris"
    assert [a["name"] for a in meta["artifacts"]] == ["model"] and "metadata" in meta["artifacts"][0]
    assert server.get("/healthz")[0] == server.get("/livez")[0] == server.get("/readyz")[0] == 200
    status, spec = server.get("/openapi.json")
    assert status == 200 and {"/predict", "/echo", "/size"} <= set(json.loads(spec)["paths"])
    status, page = server.get("/docs")
    assert status == 200 and b"/docs/static/swagger-ui-bundle.js" in page and b"https://" not in page
    assert server.get("/docs/static/swagger-ui-bundle.js")[0] == 200  # served from local files
    assert server.get("/") == (200, b"<h1>iris demo</h1>")
    assert server.get("/app.js") == (200, b"console.log('hi')")
    server.post("/predict", [[5.1, 3.5, 1.4, 0.2]])
    server.post("/predict", [[-1, 3.5, 1.4, 0.2]])
    metrics = server.get("/metrics")[1].decode()
    names = ("requests_total", "request_duration_seconds_bucket", "batch_size_rows_bucket")
    for name in (*names, "queue_wait_seconds_bucket", "rows_error_total"):
        assert f"kappa_{name}" in metrics
    assert 'kappa_requests_total{api="predict",status="400"}' in metrics


@pytest.mark.parametrize(
    ("body", "content_type", "status", "says"),
    [
        (b"{not json", "application/json", 400, "not valid JSON"),
        (b"", "application/json", 400, "empty"),
        (b"[[1, 2]]", "application/json", 400, "expects 4 columns"),
        (b'[{"sepal_length": 1}]', "application/json", 400, "missing column"),
        (b'[["a", "b", "c", "d"]]', "application/json", 400, "the model rejected this input"),
        (b"[]", "application/json", 400, "no rows"),
        (b"42", "application/json", 400, "DataframeInput"),
        (b"<xml/>", "application/xml", 415, "not accepted"),
        (b"a,b\n1,2", "text/csv", 400, "missing column"),
        (b"a,b\n1", "text/csv", 400, "not valid CSV"),
    ],
)
def test_malformed_payloads_get_4xx_with_a_message(server, body, content_type, status, says):
    got, text, _ = server.request("/predict", body, content_type)
    assert got == status, text
    assert says in json.loads(text)["error"]


def test_oversized_bodies_get_413(bundle):
    small = Server(bundle, "--max-body-bytes", "1000")
    try:
        status, body, _ = small.request("/predict", json.dumps([[5.1, 3.5, 1.4, 0.2]] * 100).encode())
        assert status == 413 and "larger than 1000 bytes" in json.loads(body)["error"]
        assert small.post("/predict", [[5.1, 3.5, 1.4, 0.2]])[0] == 200
    finally:
        small.stop()


def test_fuzzed_payloads_never_get_5xx(server):
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    scalars = st.one_of(
        st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=5)
    )
    values = st.recursive(
        scalars,
        lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=5), inner, max_size=4),
        max_leaves=20,
    )  # noqa: E501
    rows = st.lists(
        st.lists(
            st.one_of(st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=3), st.none()),
            min_size=0,
            max_size=6,
        ),
        max_size=4,
    )  # noqa: E501

    @settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
    @given(payload=st.one_of(values, rows))
    def check(payload: object) -> None:
        status, body, _ = server.request("/predict", json.dumps(payload).encode())
        assert status < 500, (payload, body)

    check()


def test_one_bad_request_in_a_batch_gets_its_own_4xx(server):
    good = [[5.1, 3.5, 1.4, 0.2]]
    payloads = [good] * 31 + [[[-2.0, 3.5, 1.4, 0.2]]]
    with ThreadPoolExecutor(32) as pool:
        results = list(pool.map(lambda p: server.post("/predict", p), payloads * 3))
    bad = [r for r, p in zip(results, payloads * 3, strict=True) if p[0][0] < 0]
    ok = [r for r, p in zip(results, payloads * 3, strict=True) if p[0][0] >= 0]
    assert all(status == 400 and "must not be negative" in body["error"] for status, body in bad)
    assert all(result == (200, [0]) for result in ok)
    metrics = server.get("/metrics")[1].decode()
    batched = [
        line
        for line in metrics.splitlines()
        if line.startswith('kappa_batch_size_rows_bucket{api="predict",le="1.0"}')
    ]
    total = [
        line for line in metrics.splitlines() if line.startswith('kappa_batch_size_rows_count{api="predict"}')
    ]
    assert float(batched[0].split()[-1]) < float(total[0].split()[-1])  # some batches held several requests


def test_overload_is_shed_with_503_and_retry_after(bundle):
    busy = Server(bundle, "--mb-max-batch-size", "4")
    try:
        row = [[5.1, 3.5, 1.4, 0.2]]
        with ThreadPoolExecutor(64) as pool:
            results = list(pool.map(lambda _: busy.request("/slow", json.dumps(row).encode()), range(400)))
        statuses = [status for status, _, _ in results]
        assert set(statuses) <= {200, 503}
        assert statuses.count(200) > 0 and statuses.count(503) > 0
        shed = next(headers for status, _, headers in results if status == 503)
        assert int(shed["retry-after"]) >= 1
    finally:
        busy.stop()


def test_sigterm_finishes_in_flight_requests_then_exits(bundle):
    server = Server(bundle)
    row = json.dumps([[5.1, 3.5, 1.4, 0.2]]).encode()
    results: list[int] = []

    def call() -> None:
        results.append(server.request("/slow", row)[0])

    threads = [threading.Thread(target=call) for _ in range(8)]
    for thread in threads:
        thread.start()
    time.sleep(0.05)  # the requests are in flight or queued
    server.process.send_signal(signal.SIGTERM)
    for thread in threads:
        thread.join(timeout=30)
    server.process.wait(timeout=30)
    assert results == [200] * 8
    assert server.process.returncode in (0, -signal.SIGTERM)  # uvicorn re-raises the signal it drained on


def test_several_workers_share_one_port_and_report_metrics_together(bundle):
    server = Server(bundle, "--workers", "2")
    try:
        deadline = time.monotonic() + 60
        while _metric(server, "kappa_ready") != 2:  # /readyz answered by one worker; wait for both
            assert time.monotonic() < deadline, "both workers never became ready"
            time.sleep(0.2)
        assert all(server.post("/predict", [[6.7, 3.0, 5.2, 2.3]]) == (200, [2]) for _ in range(20))
        # whichever worker answers /metrics reports the requests of both
        totals = {_metric(server, 'kappa_requests_total{api="predict",status="200"}') for _ in range(6)}
        assert totals == {20}
        # each worker holds its BLAS/OpenMP pools to its share of the cores, and says so
        from kappa.threads import available_cores

        shares = {json.loads(server.get("/metadata")[1])["threads_per_worker"] for _ in range(6)}
        assert shares == {max(1, available_cores() // 2)}
    finally:
        server.stop()


def _metric(server: Server, sample: str) -> float:
    for line in server.get("/metrics")[1].decode().splitlines():
        if line.startswith(sample + " "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_bad_bundle_reference_is_a_clear_error(tmp_path):
    result = subprocess.run([KAPPA, "serve", str(tmp_path / "nope")], capture_output=True, text=True)
    assert result.returncode != 0 and "no bundle at" in result.stderr and "Traceback" not in result.stderr


def _chunked_post(port: int, path: str, content_type: str, chunks: int, chunk: bytes) -> tuple[int, bytes]:
    """POST a body in chunks, without Content-Length; the answer may come before the body ends."""
    import http.client

    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        connection.putrequest("POST", path)
        connection.putheader("Content-Type", content_type)
        connection.putheader("Transfer-Encoding", "chunked")
        connection.endheaders()
        try:
            for _ in range(chunks):
                connection.send(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            connection.send(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server answered and closed before reading it all: what it should do
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def test_chunked_bodies_are_limited_while_they_stream_for_every_content_type(bundle):
    small = Server(bundle, "--max-body-bytes", "100000")
    try:
        boundary = "kappaboundary"
        part = (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="x.bin"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n"
        ).encode()
        cases = [
            ("/size", f"multipart/form-data; boundary={boundary}", part),
            ("/predict", "application/json", b"[" + b"[5.1, 3.5, 1.4, 0.2]," * 10),
            ("/v2/models/OnlineIris/infer", "application/json", b'{"inputs": [' + b" " * 500),
        ]
        for path, content_type, head in cases:
            start = time.monotonic()
            status, body = _chunked_post(small.port, path, content_type, 2000, head + b"x" * 4096)
            assert status == 413, (path, body)
            assert "larger than 100000 bytes" in json.loads(body)["error"]
            assert time.monotonic() - start < 20
        assert small.post("/predict", [[5.1, 3.5, 1.4, 0.2]])[0] == 200  # the server is fine
    finally:
        small.stop()


@pytest.mark.parametrize(
    ("body", "says"),
    [
        (b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
        (b"[[123456789012345678901234567890, 3.5, 1.4, 0.2]]", "cannot read this payload"),
        (b"[[5.1, 3.5, 1.4, 0.2, 9.9]]", "expects 4 columns"),
    ],
)
def test_hostile_json_gets_400_not_500(server, body, says):
    status, text, _ = server.request("/predict", body)
    assert status == 400, text
    assert says in json.loads(text)["error"]


def test_open_api_spec_prints_what_the_server_serves(server, bundle):
    from click.testing import CliRunner

    from kappa.cli.main import cli

    printed = CliRunner().invoke(cli, ["open-api-spec", bundle])
    assert printed.exit_code == 0, printed.output
    status, served = server.get("/openapi.json")
    assert status == 200
    assert json.loads(printed.stdout) == json.loads(served)
    assert "/predict" in json.loads(served)["paths"]


def test_a_500_never_shows_the_exception_only_a_request_id_the_log_has(bundle):
    own = Server(bundle)
    try:
        status, body, headers = own.request("/boom", b'{"x": 1}')
        mine = own.request("/boom", b'{"x": 1}', headers={"X-Request-Id": "mine-123"})
    finally:
        log = own.stop()
    # a request that sent its own id gets its 500 under it, in the answer and in the log
    assert mine[0] == 500 and mine[2]["x-request-id"] == json.loads(mine[1])["request_id"] == "mine-123"
    assert any("request id mine-123" in line and "RuntimeError" in line for line in log.splitlines())
    assert status == 500
    answer = json.loads(body)
    assert "not-for-clients" not in body.decode() and "RuntimeError" not in body.decode()
    assert answer["request_id"] == headers["x-request-id"] and answer["request_id"] in answer["error"]
    line = next(line for line in log.splitlines() if answer["request_id"] in line)
    assert "RuntimeError" in line and "postgresql://svc:***@db" in line  # logged, credentials masked


def test_without_declared_columns_each_request_is_read_on_its_own(server):
    # /echo-like freedom for DataframeInput: the first request never fixes the columns
    first = server.post("/loose", [{"x": 1.0, "y": 2.0}])
    second = server.post("/loose", [{"p": 5.0, "q": 1.0, "r": 1.0}])
    assert first == (200, [2]) and second == (200, [3])


def test_json_objects_come_back_as_sent_whatever_else_shares_their_batch(server):
    bodies = [{"a": 1}, {"b": {"c": [1, 2]}}, [{"x": 1}, {"y": None}], {"a": "text", "n": 2.5}] * 10
    with ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(lambda body: server.post("/same", body), bodies))
    assert answers == [(200, [body]) for body in bodies]


def test_each_request_in_a_micro_batch_keeps_its_own_headers_status_and_answer(server):
    def call(i: int) -> tuple[int, object, str | None]:
        accept = "application/json" if i % 3 else "text/plain"
        status, body, headers = server.request(
            "/negotiate", json.dumps(i).encode(), headers={"Accept": accept}
        )
        return status, json.loads(body), headers.get("x-item")

    with ThreadPoolExecutor(24) as pool:
        results = list(pool.map(call, range(72)))
    for i, (status, body, item_header) in enumerate(results):
        if i % 3:
            assert (status, body, item_header) == (200, [{"echo": i}], str(i))
        else:
            assert status == 406 and body["error"] == "application/json output only" and item_header is None
    metrics = server.get("/metrics")[1].decode()
    sizes = [
        line
        for line in metrics.splitlines()
        if line.startswith('kappa_batch_size_rows_count{api="negotiate"}')
    ]
    batches = float(sizes[0].split()[-1])
    assert batches < 72  # requests did share batches, and each still got its own answer


def test_deliberate_statuses_pass_and_bad_headers_never_reach_the_wire(server):
    status, body, _ = server.request("/busy", b'"wait"')
    assert (status, json.loads(body)["error"]) == (503, "warming up")  # the API's own 5xx: kept
    status, body, headers = server.request("/busy", b'"ok"')
    assert (status, json.loads(body), headers["x-ok"]) == (200, ["ok"], "7")
    assert headers["content-length"] == str(len(body))  # the API cannot fake the length
    status, body, _ = server.request("/busy", b'"crlf"')
    assert status == 500 and "request id" in json.loads(body)["error"]
