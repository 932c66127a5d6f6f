"""``svc.start_dev_server(port=...)``: the `kappa serve` app for an in-memory service, in a thread.

For trying a service from a notebook before saving it; plugged into ``kappa`` through the
``kappa.dev_server`` entry point, so the SDK never imports this package.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from kappa.errors import KappaError

log = logging.getLogger(__name__)


class DevServer:
    """A uvicorn server on a background thread; :meth:`stop` drains it and waits for the thread."""

    def __init__(self, service: Any, port: int, host: str) -> None:
        import uvicorn

        from kappa_online.app import create_app

        self.url = f"http://{host}:{port}"
        config = uvicorn.Config(create_app(service=service), host=host, port=port, log_level="warning")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, name=f"kappa-dev-{port}", daemon=True)

    def start(self, timeout: float = 30) -> DevServer:
        self.thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if not self.thread.is_alive():
                raise KappaError(f"the dev server could not start on {self.url} (is the port in use?)")
            if time.monotonic() > deadline:
                self.stop()
                raise KappaError(f"the dev server did not start on {self.url} within {timeout:.0f} s")
            time.sleep(0.05)
        log.info("dev server at %s", self.url)
        return self

    def stop(self, timeout: float = 30) -> None:
        self.server.should_exit = True
        self.thread.join(timeout)


def start_dev_server(service: Any, port: int = 5000, host: str = "127.0.0.1") -> DevServer:
    """Serve ``service`` (not saved, not a bundle) until ``stop()``."""
    return DevServer(service, port, host).start()
