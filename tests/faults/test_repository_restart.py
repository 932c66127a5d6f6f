"""PostgreSQL restarting under concurrent saves (issue 21): every version is either complete and
listed or absent, never half-visible; a save rides out a restart shorter than
`repository.db_reconnect_seconds`, and one that outlasts it fails with one clear error.

Ten `save()` calls run at once in threads of this process (each has its own connection from the
pool, as ten processes would); pickling the model takes a while, so the restart lands between a
save's pending row and its `ready`."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa

import kappa
from kappa.errors import BundleNotFound, MetadataUnavailable
from kappa.repository import open_repository
from kappa.repository.metadata import PENDING, bundles
from tests.servers import S3_ENV, Postgres, create_database

pytestmark = [pytest.mark.postgres, pytest.mark.s3, pytest.mark.slow]

SERVICE = """
import time
import kappa
from kappa.adapters import DataframeInput
from kappa.frameworks.pickle import PickleArtifact


class SlowToPickle:
    def __init__(self, seconds):
        self.seconds = seconds

    def __getstate__(self):
        time.sleep(self.seconds)
        return {"seconds": self.seconds}


@kappa.artifacts([PickleArtifact("model")])
class Held(kappa.BentoService):
    @kappa.api(input=DataframeInput(), batch=True)
    def predict(self, df):
        return [self.artifacts.model.seconds] * len(df)
"""


@pytest.fixture
def team_repo(monkeypatch: pytest.MonkeyPatch, s3_endpoint: str) -> Iterator[tuple[Postgres, str]]:
    """A PostgreSQL of its own (the test stops it) and a fresh S3 prefix; yields the server and
    the database URL."""
    import fsspec

    server = Postgres()
    try:
        server.start()
        db = create_database(server.url, "faults")
        monkeypatch.setenv("KAPPA_DB_URL", db)
        monkeypatch.setenv(
            "KAPPA_BASE_URL", f"s3://kappa-test/pg-restart-{os.getpid()}-{time.monotonic_ns()}"
        )
        monkeypatch.setenv("FSSPEC_S3_ENDPOINT_URL", s3_endpoint)
        for key, value in S3_ENV.items():
            monkeypatch.setenv(key, value)
        monkeypatch.setitem(fsspec.config.conf, "s3", {"endpoint_url": s3_endpoint})
        yield server, db
    finally:
        server.remove()


def _save_all(module: Any, seconds: list[float]) -> list[tuple[str | None, Exception | None, float]]:
    """Save one bundle per entry at once; (version or None, error or None, when it ended)."""
    results: list[tuple[str | None, Exception | None, float]] = [(None, None, 0.0)] * len(seconds)

    def save(index: int) -> None:
        service = module.Held().pack("model", module.SlowToPickle(seconds[index]))
        try:
            service.save(labels={"index": str(index)})
            results[index] = (service.version, None, time.monotonic())
        except Exception as exc:  # noqa: BLE001 - what each save raised is what the test checks
            results[index] = (None, exc, time.monotonic())

    threads = [threading.Thread(target=save, args=(i,)) for i in range(len(seconds))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    return results


def _wait_for_pending(db: str, count: int) -> None:
    engine = sa.create_engine(db)
    query = sa.select(sa.func.count()).select_from(bundles).where(bundles.c.status == PENDING)
    deadline = time.monotonic() + 60
    try:
        while time.monotonic() < deadline:
            with engine.connect() as conn:
                try:
                    if conn.execute(query).scalar() >= count:
                        return
                except sa.exc.ProgrammingError:  # the first save has not created the table yet
                    pass
            time.sleep(0.02)
        raise AssertionError(f"{count} saves never got as far as their pending rows")
    finally:
        engine.dispose()


def _nothing_half_visible(saved: set[str], failed: set[str]) -> None:
    """Every listed version is one that succeeded and loads whole (digest checked); no failed one
    is listed, and none can be fetched."""
    repo = open_repository()
    listed = {r.version for r in repo.list("Held")}
    assert listed == saved
    for version in saved:
        service = kappa.load(f"Held:{version}")
        assert service.artifacts.model.seconds >= 0  # the pickled model came back
    for version in failed:
        with pytest.raises(BundleNotFound):
            repo.get(f"Held:{version}")


def test_saves_ride_out_a_restart_and_fail_clearly_past_the_reconnect_window(
    make_module, team_repo, monkeypatch, caplog
):
    import logging

    import fsspec

    server, db = team_repo
    module = make_module(SERVICE)
    caplog.set_level(logging.INFO, logger="kappa.repository.database")

    # 1. A restart (a few seconds) while ten saves are in flight: all ten complete.
    monkeypatch.setenv("KAPPA_DB_RECONNECT_SECONDS", "30")
    seconds = [0.5 + 0.25 * i for i in range(10)]
    results: list[Any] = []
    saver = threading.Thread(target=lambda: results.extend(_save_all(module, seconds)))
    saver.start()
    _wait_for_pending(db, 10)
    server.stop("fast")  # every connection is cut, as a restart or a failover does
    time.sleep(4)  # long enough that the saves finish pickling meanwhile and find no server
    server.start()
    restarted = time.monotonic()
    saver.join(timeout=300)
    errors = [exc for _, exc, _ in results if exc is not None]
    assert not errors, errors
    assert sum(ended > restarted for _, _, ended in results) >= 5  # most were mid-save across it
    assert any("trying again" in r.getMessage() for r in caplog.records)  # they waited for the server
    first = {version for version, _, _ in results if version}
    assert len(first) == 10
    _nothing_half_visible(first, set())

    # 2. The database stays away longer than the window: those saves fail with one clear error,
    # and none of them is listed.
    monkeypatch.setenv("KAPPA_DB_RECONNECT_SECONDS", "1")
    results = []
    saver = threading.Thread(target=lambda: results.extend(_save_all(module, [3.0, 3.5, 4.0])))
    saver.start()
    _wait_for_pending(db, 3)
    server.stop("fast")
    saver.join(timeout=120)
    server.start()
    assert all(isinstance(exc, MetadataUnavailable) for _, exc, _ in results), results
    for _, exc, _ in results:
        message = str(exc)
        assert message.startswith(f"the metadata database {db!r} did not answer")
        assert "did not complete and it is not listed: save again once the database answers" in message
    pending = sa.create_engine(db)
    with pending.connect() as conn:
        rows = conn.execute(sa.select(bundles.c.version, bundles.c.status)).all()
    pending.dispose()
    stranded = {version for version, status in rows if status == PENDING}
    assert len(stranded) == 3  # the database was gone when they tried to remove their rows
    fs, base = fsspec.core.url_to_fs(os.environ["KAPPA_BASE_URL"])
    fs.invalidate_cache()
    assert not [v for v in stranded if fs.exists(f"{base}/Held/{v}")]  # their files are gone
    _nothing_half_visible(first, stranded)

    # 3. A process that opens the repository while the database restarts waits for it too (the
    # window covers opening the store and creating its tables).
    monkeypatch.setenv("KAPPA_DB_RECONNECT_SECONDS", "30")
    server.stop("fast")
    opened: list[Any] = []

    def open_and_list() -> None:
        try:
            opened.append({r.version for r in open_repository().list("Held")})
        except Exception as exc:  # noqa: BLE001 - what opening raised is what the test checks
            opened.append(exc)

    opener = threading.Thread(target=open_and_list)
    opener.start()
    time.sleep(2)
    server.start()
    opener.join(timeout=60)
    assert opened == [first], opened

    # 4. The run records and the registry's tokens ride out a restart the same way: calls made on
    # stores already open while the server is down wait for it (they failed at once before).
    from kappa_gamma.tokens import TokenStore

    runs = open_repository().runs()
    tokens = TokenStore(db, reconnect_seconds=30)
    token, _ = tokens.create("read", "restart")
    _, revoked = tokens.create("read", "to revoke")  # another one: the calls run at once
    version = sorted(first)[0]
    report = {
        "run_id": "restart-run-1", "bundle": f"Held:{version}", "api": "predict", "engine": "local",
        "status": "succeeded", "rows_in": 3, "rows_out": 3, "rows_error": 0,
        "started_at": time.time(), "finished_at": time.time(),
    }  # fmt: skip
    calls = {
        "check": lambda: tokens.check(token).scope,
        "revoke": lambda: tokens.revoke(revoked.token_id),
        "record": lambda: runs.add(report).run_id,
    }
    done: dict[str, Any] = {}

    def call(name: str) -> None:
        try:
            done[name] = calls[name]()
        except Exception as exc:  # noqa: BLE001 - what the call raised is what the test checks
            done[name] = exc

    server.stop("fast")
    callers = [threading.Thread(target=call, args=(name,)) for name in calls]
    for caller in callers:
        caller.start()
    time.sleep(2)
    assert not done  # all three are waiting for the server, none failed
    server.start()
    for caller in callers:
        caller.join(timeout=60)
    assert done == {"check": "read", "revoke": True, "record": "restart-run-1"}, done
    assert [r.run_id for r in runs.list("Held")] == ["restart-run-1"]


def test_the_registry_answers_503_while_its_database_is_away_and_recovers(tmp_path):
    """The registry server on PostgreSQL: while the database is away past the reconnect window,
    a request whose token must be checked and one that lists bundles are answered 503 with
    Retry-After and a line that names no database (the token check raised from deep inside
    before: a plain-text 500); the server's event loop is not held meanwhile (/healthz answers
    at once); once the database is back the same requests are answered, with no restart."""
    import json
    import threading
    import urllib.error
    import urllib.request

    from kappa_gamma.api import DATABASE_AWAY
    from tests.servers import gamma_server

    def get(url: str, token: str | None = None) -> tuple[int, Any, Any]:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        request = urllib.request.Request(url, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=60) as reply:
                body = reply.read()
                return reply.status, json.loads(body) if token else body, reply.headers
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read()), exc.headers

    server = Postgres()
    try:
        server.start()
        db = create_database(server.url, "registry")
        settings = {"KAPPA_DB_RECONNECT_SECONDS": "3"}
        with gamma_server(tmp_path, db, str(tmp_path / "bundles"), settings) as gamma:
            bundles = f"{gamma.url}/api/v1/bundles"
            assert get(bundles, gamma.tokens["read"])[:2] == (200, {"bundles": []})
            page = urllib.request.Request(
                f"{gamma.url}/ui", headers={"Authorization": f"Bearer {gamma.tokens['admin']}"}
            )
            urllib.request.urlopen(page, timeout=60).close()  # the token is remembered for 5 s now
            server.stop("fast")
            with pytest.raises(urllib.error.HTTPError) as shown:  # the web UI's page says the same
                urllib.request.urlopen(page, timeout=60)
            html = shown.value.read().decode()
            assert shown.value.code == 503 and "the registry&#x27;s database did not answer" in html, html
            assert "127.0.0.1" not in html and "postgresql" not in html
            answers: list[Any] = []
            for token in (gamma.tokens["write"], gamma.tokens["read"]):
                asking = threading.Thread(target=lambda t=token: answers.append(get(bundles, t)))
                asking.start()
                time.sleep(0.5)  # the request is waiting for the database now
                started = time.monotonic()
                assert get(f"{gamma.url}/healthz")[:2] == (200, b"ok")
                assert time.monotonic() - started < 1  # the event loop is free
                asking.join(timeout=60)
            for status, body, headers in answers:
                assert status == 503 and headers["Retry-After"] == "5", body
                assert body == {"error": DATABASE_AWAY, "kind": "MetadataUnavailable"}
            server.start()
            assert get(bundles, gamma.tokens["write"])[:2] == (200, {"bundles": []})
        assert "the metadata database" in (tmp_path / "gamma-server.log").read_text()  # why, for the admin
    finally:
        server.remove()
