"""``svc.start_dev_server(port=...)``: an unsaved service answers over HTTP, as documented."""

from __future__ import annotations

import json
import urllib.request

import pytest

pytestmark = pytest.mark.server


def test_an_in_memory_service_serves_on_a_local_port_until_stopped(iris_service):
    from tests.servers import free_port

    port = free_port()
    url = iris_service.start_dev_server(port=port)
    try:
        assert url == f"http://127.0.0.1:{port}"
        request = urllib.request.Request(
            f"{url}/predict", data=b"[[5.1, 3.5, 1.4, 0.2]]", headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            assert json.loads(response.read()) == [0]
        with urllib.request.urlopen(f"{url}/metadata", timeout=30) as response:
            assert json.loads(response.read())["name"] == "IrisClassifier"
        with pytest.raises(Exception, match="already has a dev server"):
            iris_service.start_dev_server(port=port)
    finally:
        iris_service.stop_dev_server()
    with pytest.raises(OSError):
        urllib.request.urlopen(f"{url}/livez", timeout=5)
