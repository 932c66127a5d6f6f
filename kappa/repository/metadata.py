"""The metadata store: one row per bundle version, in any SQLAlchemy database."""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import sqlalchemy as sa

from kappa.errors import MetadataUnavailable, RepositoryError, VersionExists
from kappa.redact import redact, register_secret
from kappa.repository.records import BundleRecord

PENDING, READY, DELETED = "pending", "ready", "deleted"
DISCARDING = "discarding"  # a stranded save whose files `kappa gc` is removing (never listed)
T = TypeVar("T")
log = logging.getLogger(__name__)

_meta = sa.MetaData()
bundles = sa.Table(
    "kappa_bundles",
    _meta,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("name", sa.String(128), nullable=False),
    sa.Column("version", sa.String(128), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("uri", sa.Text, nullable=False),
    sa.Column("digest", sa.String(80)),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("updated_at", sa.Float, nullable=False),
    sa.Column("labels", sa.Text, nullable=False, default="{}"),
    sa.Column("summary", sa.Text, nullable=False, default="{}"),
    sa.Column("manifest", sa.Text),
    sa.UniqueConstraint("name", "version", name="uq_kappa_bundles_name_version"),
    sa.Index("ix_kappa_bundles_name_status_created", "name", "status", "created_at"),
)


def _record(row: Any) -> BundleRecord:
    return BundleRecord(
        name=row.name,
        version=row.version,
        status=row.status,
        uri=row.uri,
        digest=row.digest,
        created_at=row.created_at,
        labels=json.loads(row.labels or "{}"),
        summary=json.loads(row.summary or "{}"),
    )


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
    A server that does not answer (a restart) is tried again for up to ``reconnect_seconds``
    (not SQLite's file)."""
    try:
        register_secret(sa.engine.make_url(url).password)
    except sa.exc.ArgumentError:
        pass  # reported below
    waiting = _Reconnect(0.0 if url.startswith("sqlite") else reconnect_seconds)
    while True:
        try:
            engine = shared_engine(url)
            create_tables(engine, metadata)
            return engine
        except sa.exc.ArgumentError as exc:
            raise RepositoryError(redact(f"bad repository.db_url {url!r}: {exc}")) from None
        except (sa.exc.OperationalError, sa.exc.InterfaceError) as exc:
            if _refused(exc) or not waiting.again(exc):
                said = f"cannot open the metadata database {url!r}: {exc.orig}"
                raise RepositoryError(redact(said)) from None
        except ModuleNotFoundError as exc:
            raise RepositoryError(
                f"the database driver for {url!r} is not installed ({exc.name}); "
                "for PostgreSQL run `pip install 'kappa-engine[postgres]'`"
            ) from None


class MetadataStore:
    """Bundle rows: ``pending`` while files are written, ``ready`` once complete.

    A database server that stops answering (a restart, a failover) is waited for up to
    ``reconnect_seconds``, also when the store is opened: a call retries while it cannot
    connect, and a statement that failed before its transaction committed is run again. A
    connection lost during a commit is never retried (the commit may have happened): that call
    fails with :class:`MetadataUnavailable`.
    """

    _columns = [c for c in bundles.c if c.name != "manifest"]

    def __init__(self, url: str, reconnect_seconds: float = 10.0) -> None:
        self.url = url
        self.reconnect_seconds = 0.0 if url.startswith("sqlite") else reconnect_seconds
        self.engine = open_tables(url, _meta, self.reconnect_seconds)

    def _call(self, work: Callable[[sa.Connection], T], write: bool = False) -> T:
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
                    what = "did not answer" if self.reconnect_seconds else "failed"
                    said = f"the metadata database {self.url!r} {what}{maybe}: {_first_line(exc)}"
                    raise MetadataUnavailable(redact(said), in_doubt=committing) from None

    def add_pending(self, name: str, version: str, uri: str, labels: dict[str, str]) -> None:
        now = time.time()
        row = bundles.insert().values(
            name=name,
            version=version,
            status=PENDING,
            uri=uri,
            created_at=now,
            updated_at=now,
            labels=json.dumps(labels, sort_keys=True),
            summary="{}",
        )
        try:
            self._call(lambda conn: conn.execute(row), write=True)
        except sa.exc.IntegrityError:
            raise VersionExists(f"{name}:{version} already exists; versions are never reused") from None

    def mark_ready(
        self, name: str, version: str, digest: str, summary: dict[str, Any], manifest: dict[str, Any]
    ) -> None:
        update = (
            bundles.update()
            .where(bundles.c.name == name, bundles.c.version == version, bundles.c.status == PENDING)
            .values(
                status=READY,
                digest=digest,
                updated_at=time.time(),
                summary=json.dumps(summary),
                manifest=json.dumps(manifest),
            )
        )

        def run(conn: sa.Connection) -> None:
            if conn.execute(update).rowcount != 1:
                raise RepositoryError(f"{name}:{version} is no longer pending; it cannot be completed")

        self._call(run, write=True)

    def discard_pending(self, name: str, version: str) -> str | None:
        """Remove ``name:version``'s row if it is still pending; returns the status it had
        (``None``: no row). ``ready`` means a save that seemed to fail did complete."""

        def run(conn: sa.Connection) -> str | None:
            where = (bundles.c.name == name, bundles.c.version == version)
            if conn.execute(bundles.delete().where(*where, bundles.c.status == PENDING)).rowcount == 1:
                return PENDING
            return conn.execute(sa.select(bundles.c.status).where(*where)).scalar()

        return self._call(run, write=True)

    def claim_stranded(self, name: str, version: str) -> bool:
        """Turn a ``pending`` row ``discarding`` (its save can no longer complete); False when it
        is not pending any more."""
        update = (
            bundles.update()
            .where(bundles.c.name == name, bundles.c.version == version, bundles.c.status == PENDING)
            .values(status=DISCARDING, updated_at=time.time())
        )
        return bool(self._call(lambda conn: conn.execute(update).rowcount == 1, write=True))

    def remove_discarded(self, name: str, version: str) -> None:
        where = (bundles.c.name == name, bundles.c.version == version, bundles.c.status == DISCARDING)
        self._call(lambda conn: conn.execute(bundles.delete().where(*where)), write=True)

    def set_status(self, name: str, version: str, status: str) -> None:
        update = (
            bundles.update()
            .where(bundles.c.name == name, bundles.c.version == version)
            .values(status=status, updated_at=time.time())
        )
        self._call(lambda conn: conn.execute(update), write=True)

    def set_labels(self, name: str, version: str, labels: dict[str, str]) -> None:
        update = (
            bundles.update()
            .where(bundles.c.name == name, bundles.c.version == version, bundles.c.status == READY)
            .values(labels=json.dumps(labels, sort_keys=True), updated_at=time.time())
        )
        self._call(lambda conn: conn.execute(update), write=True)

    def ever_stored(self, name: str, version: str) -> bool:
        """Whether ``name:version`` was stored complete (it may have been deleted since)."""
        query = sa.select(bundles.c.id).where(
            bundles.c.name == name, bundles.c.version == version, bundles.c.status.in_([READY, DELETED])
        )
        return self._call(lambda conn: conn.execute(query).first() is not None)

    def get(self, name: str, version: str | None) -> BundleRecord | None:
        """A ready bundle; ``version=None`` means the newest ready one."""
        query = sa.select(*self._columns).where(bundles.c.name == name, bundles.c.status == READY)
        if version is None:
            query = query.order_by(bundles.c.created_at.desc(), bundles.c.id.desc()).limit(1)
        else:
            query = query.where(bundles.c.version == version)
        row = self._call(lambda conn: conn.execute(query).first())
        return _record(row) if row is not None else None

    def manifest(self, name: str, version: str) -> dict[str, Any]:
        query = sa.select(bundles.c.manifest).where(bundles.c.name == name, bundles.c.version == version)
        text = self._call(lambda conn: conn.execute(query).scalar())
        return json.loads(text) if text else {}

    def list(
        self,
        name: str | None = None,
        statuses: Sequence[str] = (READY,),
        order_by: str = "created_at",
        descending: bool = True,
    ) -> list[BundleRecord]:
        column = {
            "created_at": bundles.c.created_at,
            "name": bundles.c.name,
            "version": bundles.c.version,
        }.get(order_by)
        if column is None:
            raise RepositoryError(f"cannot order by {order_by!r}; use created_at, name or version")
        query = sa.select(*self._columns).where(bundles.c.status.in_(list(statuses)))
        if name is not None:
            query = query.where(bundles.c.name == name)
        query = query.order_by(column.desc() if descending else column.asc(), bundles.c.id.desc())
        return self._call(lambda conn: [_record(row) for row in conn.execute(query)])


class _Reconnect:
    """The waits between tries at a database server that did not answer, for ``seconds`` in all:
    0.05 s, doubling up to 1 s."""

    def __init__(self, seconds: float) -> None:
        self.deadline = time.monotonic() + seconds
        self.delay = 0.05

    def again(self, exc: sa.exc.DBAPIError) -> bool:
        """Wait (and say so) before the next try after ``exc``; False when that would pass the
        deadline (give up)."""
        if time.monotonic() + self.delay > self.deadline:
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
