"""Hot swap: `kappa serve NAME:latest --watch` serves newer versions without a restart, under
load, and refuses versions that cannot stand in for the serving one."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

pytestmark = pytest.mark.server
KAPPA = str(Path(sys.executable).parent / "kappa")

SERVICE = """
import kappa
from kappa.adapters import DataframeInput, JsonInput

@kappa.api_version_marker
class Swapped(kappa.BentoService):
    @kappa.api(input=DataframeInput(columns=["x"], dtype="float64"), batch=True)
    def predict(self, df):
        return [OFFSET + v for v in df["x"]]
"""


def _service(make_module, offset: int, broken: bool = False, other_api: bool = False):
    text = SERVICE.replace("@kappa.api_version_marker\n", "").replace("OFFSET", str(offset))
    if broken:
        text = text.replace("return [", "raise RuntimeError('this version is broken')\n        return [")
    if other_api:
        text = text.replace('columns=["x"]', 'columns=["x", "y"]')
    return make_module(text).Swapped()


def _post(url: str, rows, headers=None):
    request = urllib.request.Request(
        url + "/predict", json.dumps(rows).encode(), {"Content-Type": "application/json", **(headers or {})}
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read()), dict(response.headers)
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null"), dict(exc.headers)


def _v2_infer(url: str, request_id: str):
    payload = {"inputs": [{"name": "x", "datatype": "FP64", "shape": [1], "data": [1.0]}]}
    request = urllib.request.Request(
        url + "/v2/models/Swapped/infer",
        json.dumps(payload).encode(),
        {"Content-Type": "application/json", "X-Request-Id": request_id},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read()), {k.lower(): v for k, v in response.headers.items()}


@pytest.fixture
def served(kappa_home, make_module):
    """v1 saved, then `kappa serve Swapped:latest --watch` with a short interval and an admin token."""
    from tests.servers import free_port, wait_for_port

    _service(make_module, 100).save(version="v1")
    port = free_port()
    env = {**os.environ, "KAPPA_SERVE_ADMIN_TOKEN": "admin-secret"}
    process = subprocess.Popen(
        [KAPPA, "serve", "Swapped:latest", "--port", str(port), "--watch", "--watch-interval", "0.3"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    wait_for_port(port, timeout=60, process=process)
    url = f"http://127.0.0.1:{port}"
    logs: list[str] = []

    def stop() -> str:
        if process.poll() is None:
            process.terminate()
            logs.append(process.communicate(timeout=60)[0])
        return logs[0]

    yield url, stop
    stop()


def _serving(url: str, version: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while _post(url, [[1.0]])[2].get("x-kappa-version") != f"Swapped:{version}":
        assert time.monotonic() < deadline, f"never served {version}"
        time.sleep(0.1)


def test_newer_versions_swap_in_under_load_and_bad_ones_are_skipped(served, make_module):
    served, stop_server = served
    status, body, headers = _post(served, [[1.0], [2.0]], {"X-Request-Id": "req-42"})
    assert (status, body) == (200, [101.0, 102.0])
    assert headers["x-kappa-version"] == "Swapped:v1" and headers["x-request-id"] == "req-42"
    other = urllib.request.urlopen(served + "/metadata", timeout=10)
    assert other.headers["X-Kappa-Version"] == "Swapped:v1" and len(other.headers["X-Request-Id"]) == 16
    assert json.loads(other.read())["serving"] == ["Swapped:v1"]

    answers: list[tuple[int, str]] = []
    stop = threading.Event()

    def hammer() -> None:  # requests in flight during every swap
        while not stop.is_set():
            status, _, headers = _post(served, [[1.0]])
            answers.append((status, headers.get("x-kappa-version", "")))

    threads = [threading.Thread(target=hammer) for _ in range(4)]
    for thread in threads:
        thread.start()
    try:
        _service(make_module, 200).save(version="v2")
        _serving(served, "v2")
        _service(make_module, 300, broken=True).save(version="v3")  # fails its warm-up: skipped
        time.sleep(1.2)
        assert _post(served, [[1.0]])[:2] == (200, [201.0])
        _service(make_module, 400, other_api=True).save(version="v4")  # another API signature: skipped
        time.sleep(1.2)
        assert _post(served, [[1.0]])[:2] == (200, [201.0])
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    assert answers and {status for status, _ in answers} == {200}
    assert {version for _, version in answers} == {"Swapped:v1", "Swapped:v2"}
    metrics = urllib.request.urlopen(served + "/metrics", timeout=10).read().decode()
    assert 'kappa_serving_version{version="Swapped:v2"} 1.0' in metrics
    assert 'kappa_serving_version{version="Swapped:v1"} 0.0' in metrics
    log = stop_server()
    assert log.count("not serving Swapped:v3") == 1 and "this version is broken" in log  # one line each
    assert log.count("not serving Swapped:v4") == 1 and "API signature differs" in log


def test_admin_reload_needs_its_token(served, make_module):
    served, _ = served
    request = urllib.request.Request(served + "/admin/reload", b"", method="POST")
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=10)
    assert refused.value.code == 401
    wrong = urllib.request.Request(served + "/admin/reload", b"", method="POST")
    wrong.add_header("Authorization", "Bearer admin-secreT")
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(wrong, timeout=10)
    assert refused.value.code == 401
    _service(make_module, 500).save(version="v5")
    request.add_header("Authorization", "Bearer admin-secret")
    with urllib.request.urlopen(request, timeout=30) as response:
        result = json.loads(response.read())
    # the watcher may have been first: either way v5 serves now
    assert result["serving"] == "Swapped:v5"
    assert _post(served, [[1.0]])[:2] == (200, [501.0])


def test_a_canary_takes_its_share_by_request_id(kappa_home, make_module):
    from tests.servers import free_port, wait_for_port

    _service(make_module, 100).save(version="v1")
    _service(make_module, 200).save(version="v2")
    _service(make_module, 900, other_api=True).save(version="odd")
    port = free_port()
    command = [
        KAPPA,
        "serve",
        "Swapped:v1",
        "--port",
        str(port),
        "--canary",
        "Swapped:v2",
        "--canary-weight",
        "0.2",
    ]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for_port(port, timeout=60, process=process)
        with ThreadPoolExecutor(16) as pool:  # at once: micro-batches form, and must keep to one version
            answers = list(pool.map(lambda i: _post(url, [[1.0]], {"X-Request-Id": f"user-{i}"}), range(400)))
        versions = [headers["x-kappa-version"] for _, _, headers in answers]
        to_canary = versions.count("Swapped:v2") / len(versions)
        assert 0.12 < to_canary < 0.28  # 20% of the requests, by their ids' hash
        for status, body, headers in answers:  # each answered by the version it names
            assert status == 200 and body == [201.0 if headers["x-kappa-version"] == "Swapped:v2" else 101.0]
        again = [_post(url, [[1.0]], {"X-Request-Id": f"user-{i}"})[2]["x-kappa-version"] for i in range(50)]
        assert again == versions[:50]  # the same id always lands on the same version
        v2 = [_v2_infer(url, f"user-{i}") for i in range(50)]  # the V2 route splits the same way
        assert [headers["x-kappa-version"] for _, headers in v2] == versions[:50]
        for body, headers in v2:
            assert f"Swapped:{body['model_version']}" == headers["x-kappa-version"]
            assert body["outputs"][0]["data"] == [201.0 if body["model_version"] == "v2" else 101.0]
        again += [headers["x-kappa-version"] for _, headers in v2]
        metadata = json.loads(urllib.request.urlopen(url + "/metadata", timeout=10).read())
        assert metadata["serving"] == ["Swapped:v1", "Swapped:v2"]
        assert metadata["canary"] == {"version": "Swapped:v2", "weight": 0.2}
        metrics = urllib.request.urlopen(url + "/metrics", timeout=10).read().decode()
        for tag in ("Swapped:v1", "Swapped:v2"):  # requests counted by the version that answered
            line = f'kappa_version_requests_total{{status="200",version="{tag}"}}'
            assert f"{line} {float((versions + again).count(tag))}" in metrics
            latency = f'kappa_version_request_duration_seconds_count{{version="{tag}"}}'
            assert f"{latency} {float((versions + again).count(tag))}" in metrics
    finally:
        process.terminate()
        process.communicate(timeout=60)
    # a canary whose API signature differs is refused in one line; the bundle serves alone
    port = free_port()
    command = [KAPPA, "serve", "Swapped:v1", "--port", str(port), "--canary", "Swapped:odd"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        wait_for_port(port, timeout=60, process=process)
        url = f"http://127.0.0.1:{port}"
        assert {_post(url, [[1.0]])[2]["x-kappa-version"] for _ in range(30)} == {"Swapped:v1"}
    finally:
        process.terminate()
        log = process.communicate(timeout=60)[0]
    assert log.count("no canary: Swapped:odd") == 1 and "API signature differs" in log


def test_admin_reload_reaches_every_worker(kappa_home, make_module):
    """With --workers 2 the reload lands on one worker; the other follows it (the serving-version
    gauge sums over live workers, so 2.0 means both serve v2)."""
    from tests.servers import free_port, wait_for_port

    _service(make_module, 100).save(version="v1")
    port = free_port()
    process = subprocess.Popen(
        [KAPPA, "serve", "Swapped:latest", "--port", str(port), "--workers", "2"],
        env={**os.environ, "KAPPA_SERVE_ADMIN_TOKEN": "admin-secret"},
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"

    def gauge(sample: str) -> float:
        text = urllib.request.urlopen(url + "/metrics", timeout=10).read().decode()
        return next(
            (float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(sample)), 0.0
        )

    def until(check, what: str) -> None:  # type: ignore[no-untyped-def]
        deadline = time.monotonic() + 30
        while not check():
            assert time.monotonic() < deadline, what
            time.sleep(0.2)

    try:
        wait_for_port(port, timeout=60, process=process)
        until(lambda: gauge("kappa_ready ") == 2, "both workers never became ready")
        _service(make_module, 200).save(version="v2")
        request = urllib.request.Request(url + "/admin/reload", b"", method="POST")
        request.add_header("Authorization", "Bearer admin-secret")
        with urllib.request.urlopen(request, timeout=60) as response:
            result = json.loads(response.read())
        assert result["serving"] == "Swapped:v2" and "every worker" in result["workers"]
        until(lambda: gauge('kappa_serving_version{version="Swapped:v2"}') == 2, "a worker still serves v1")
        assert gauge('kappa_serving_version{version="Swapped:v1"}') == 0
        assert all(_post(url, [[1.0]])[:2] == (200, [201.0]) for _ in range(10))
    finally:
        process.terminate()
        process.wait(timeout=60)


def test_a_worker_follows_reload_signals_even_one_sent_before_it_was_ready(tmp_path):
    """The signal file: one already written when a worker starts (it was loading during the
    reload, or was started again) makes it look once; every rewrite makes it look again; a
    signal that cannot be written is reported, not raised."""
    import asyncio
    from types import SimpleNamespace

    from kappa_online import swap

    signal_file = str(tmp_path / "reload")
    assert swap.announce(signal_file) is None  # sent before the worker below was ready

    class Counting(swap.Swapper):
        looks = 0

        async def check(self):  # type: ignore[override]
            Counting.looks += 1
            return {}

    async def scenario() -> int:
        swapper = Counting(SimpleNamespace(ready=True))  # type: ignore[arg-type]
        task = asyncio.get_running_loop().create_task(swapper.follow(signal_file))
        await asyncio.sleep(swap.SIGNAL_POLL * 2.5)
        first = Counting.looks
        swap.announce(signal_file)
        await asyncio.sleep(swap.SIGNAL_POLL * 2.5)
        task.cancel()
        return first

    assert asyncio.run(scenario()) == 1 and Counting.looks == 2
    blocked = tmp_path / "file"
    blocked.write_text("")
    assert swap.announce(str(blocked / "reload"))  # its folder is a file: the reason comes back
