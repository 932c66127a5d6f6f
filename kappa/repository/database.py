"""A database the repository keeps rows in (bundles, scoring runs, the registry's tokens): one
shared engine per URL and process, its tables created, and calls that ride out a server restart."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import sqlalchemy as sa

from kappa.errors import MetadataUnavailable, RepositoryError
from kappa.redact import redact, register_secret

T = TypeVar("T")
log = logging.getLogger(__name__)


def _engine(url: str) -> sa.Engine:
    if url.startswith("sqlite"):
        database = sa.engine.make_url(url).database
        if database and database != ":memory:":
            Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)
        engine = sa.create_engine(url, connect_args={"timeout": 30})

        @sa.event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn: Any, _record: Any) -> None:
            cursor = dbapi_conn.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.close()

        return engine
    if url.startswith("postgresql"):  # a host that drops packets must not hold a call past the window
        return sa.create_engine(url, pool_pre_ping=True, connect_args={"connect_timeout": 10})
    return sa.create_engine(url, pool_pre_ping=True)


def create_tables(engine: sa.Engine, metadata: sa.MetaData) -> None:
    """Create ``metadata``'s tables once; another process creating them at the same moment is fine."""
    for attempt in range(5):
        try:
            metadata.create_all(engine, checkfirst=True)
            return
        except (sa.exc.IntegrityError, sa.exc.ProgrammingError, sa.exc.OperationalError):
            inspector = sa.inspect(engine)
            if all(inspector.has_table(name) for name in metadata.tables):
                return  # created by another process in the meantime
            if attempt == 4:
                raise
            time.sleep(0.05 * (attempt + 1))


_engines: dict[tuple[str, int], sa.Engine] = {}


def shared_engine(url: str) -> sa.Engine:
    """One engine (and connection pool) per database URL in this process (a forked child
    opens its own: pooled connections are never shared across processes)."""
    key = (url, os.getpid())
    engine = _engines.get(key)
    if engine is None:
        engine = _engines[key] = _engine(url)
    return engine


def open_tables(url: str, metadata: sa.MetaData, reconnect_seconds: float = 0.0) -> sa.Engine:
    """The shared engine of the database ``url``, with ``metadata``'s tables created; a bad URL,
    an unreachable server or a missing driver is a RepositoryError that says so (no password).
    A server that does not answer (a restart) is tried again for up to ``reconnect_seconds``."""
    try:
        register_secret(sa.engine.make_url(url).password)
    except sa.exc.ArgumentError:
        pass  # reported below
    waiting = _Reconnect(reconnect_seconds)
    while True:
        try:
            engine = shared_engine(url)
            create_tables(engine, metadata)
            return engine
        except sa.exc.ArgumentError as exc:
            raise RepositoryError(redact(f"bad repository.db_url {url!r}: {exc}")) from None
        except (sa.exc.OperationalError, sa.exc.InterfaceError) as exc:
            if not waiting.again(exc):
                said = f"cannot open the metadata database {url!r}: {exc.orig}"
                raise RepositoryError(redact(said)) from None
        except ModuleNotFoundError as exc:
            raise RepositoryError(
                f"the database driver for {url!r} is not installed ({exc.name}); "
                "for PostgreSQL run `pip install 'kappa-engine[postgres]'`"
            ) from None


class Database:
    """The tables of ``metadata`` in the database ``url``.

    A server that stops answering (a restart, a failover) is waited for up to
    ``reconnect_seconds``, also when the database is opened: a call retries while it cannot
    connect, and a statement that failed before its transaction committed is run again. A
    connection lost during a commit is never retried (the commit may have happened): that call
    fails with :class:`MetadataUnavailable`. A server that answers with a refusal (a wrong
    password, no such database) is said at once.
    """

    def __init__(self, url: str, metadata: sa.MetaData, reconnect_seconds: float = 10.0) -> None:
        self.url = url
        self.reconnect_seconds = 0.0 if url.startswith("sqlite") else reconnect_seconds  # a file: no restarts
        self.engine = open_tables(url, metadata, self.reconnect_seconds)

    def call(self, work: Callable[[sa.Connection], T], write: bool = False) -> T:
        """``work(connection)``, in one transaction when ``write``."""
        waiting = _Reconnect(self.reconnect_seconds)
        while True:
            committing = False
            try:
                with self.engine.connect() as conn:
                    if not write:
                        return work(conn)
                    with conn.begin():
                        result = work(conn)
                        committing = True
                    return result
            except (sa.exc.OperationalError, sa.exc.InterfaceError) as exc:
                if committing or not waiting.again(exc):
                    maybe = " (the change may or may not have been made)" if committing else ""
                    what = "did not answer" if self.reconnect_seconds and not _refused(exc) else "failed"
                    said = f"the metadata database {self.url!r} {what}{maybe}: {_first_line(exc)}"
                    raise MetadataUnavailable(redact(said), in_doubt=committing) from None


class _Reconnect:
    """The waits between tries at a database server that did not answer, for ``seconds`` in all:
    0.05 s, doubling up to 1 s."""

    def __init__(self, seconds: float) -> None:
        self.deadline = time.monotonic() + seconds
        self.delay = 0.05

    def again(self, exc: sa.exc.DBAPIError) -> bool:
        """Wait (and say so) before the next try after ``exc``; False when the server refused (a
        wait changes nothing) or the wait would pass the deadline (give up)."""
        if _refused(exc) or time.monotonic() + self.delay > self.deadline:
            return False
        log.info("the metadata database did not answer (%s); trying again", _first_line(exc))
        time.sleep(self.delay)
        self.delay = min(self.delay * 2, 1.0)
        return True


# PostgreSQL's answers that waiting does not change: bad password, no such role or database. A
# refused connection has no SQLSTATE in psycopg, only the server's FATAL line ("the database system
# is starting up" is not one of these: a restart is waited for).
_LASTING = {"28P01", "28000", "3D000"}
_LASTING_TEXT = ("password authentication failed", "does not exist", "no pg_hba.conf entry")


def _refused(exc: sa.exc.DBAPIError) -> bool:
    """Whether the server answered, refusing: a wrong password or database name is said at once,
    not after the reconnect window."""
    text = str(exc.orig)
    return getattr(exc.orig, "sqlstate", None) in _LASTING or any(t in text for t in _LASTING_TEXT)


def _first_line(exc: sa.exc.DBAPIError) -> str:
    lines = str(exc.orig if exc.orig is not None else exc).strip().splitlines()
    return lines[0] if lines else type(exc.orig or exc).__name__
