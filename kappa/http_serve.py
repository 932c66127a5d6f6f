"""Running an ASGI app under uvicorn as Kappa's servers need it (``kappa serve``, the Gamma registry).

* **Python's asyncio loop, not uvloop.** uvloop's libuv accepts one connection per loop turn,
  so under load new connections waited seconds in the listen queue, where no latency
  measure or shedding rule sees them (bench/RESULTS.md run 24: 90 connections still waiting
  1 s into a 256-connection run, p99 0.8 s and 228 client time-outs; on asyncio p99 0.15 s,
  none). asyncio accepts up to the backlog per turn.
* **TCP_NODELAY for worker processes.** With ``workers > 1`` uvicorn opens the shared socket
  itself (protocol 0), and asyncio sets TCP_NODELAY only on sockets it opened as TCP: every
  answer then waited on Nagle and the client's delayed ACK (40 ms; 662 req/s where 3,579 are
  possible, run 24). The option is set on the shared socket; accepted connections inherit it.
"""

from __future__ import annotations

from typing import Any


def run(app: Any, *, host: str, port: int, workers: int = 1, **options: Any) -> None:
    """``uvicorn.run(app, ...)`` with the two differences above; exits 3 when the server could not
    start (the port was taken, or the app's startup failed), as uvicorn.run does."""
    import uvicorn

    config = uvicorn.Config(app, host=host, port=port, workers=workers, loop="asyncio", **options)
    if workers > 1:
        _serve_workers(config)
        return
    server = uvicorn.Server(config)
    try:
        server.run()
    except KeyboardInterrupt:  # Ctrl+C: drained, as uvicorn.run would end it
        return
    if not server.started:
        raise SystemExit(3)


def _serve_workers(config: Any) -> None:
    """Worker processes on one shared socket, as ``uvicorn --workers`` runs them."""
    import socket

    from uvicorn.supervisors import Multiprocess

    sock = config.bind_socket()
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    Multiprocess(config, sockets=[sock]).run()
