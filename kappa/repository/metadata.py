"""The metadata store: one row per bundle version, in any SQLAlchemy database."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import sqlalchemy as sa

from kappa.errors import RepositoryError, VersionExists
from kappa.repository.database import Database
from kappa.repository.records import BundleRecord

PENDING, READY, DELETED = "pending", "ready", "deleted"
DISCARDING = "discarding"  # a stranded save whose files `kappa gc` is removing (never listed)
T = TypeVar("T")

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


class MetadataStore:
    """Bundle rows: ``pending`` while files are written, ``ready`` once complete. Every call rides
    out a server restart of up to ``reconnect_seconds`` (see :class:`Database`)."""

    _columns = [c for c in bundles.c if c.name != "manifest"]

    def __init__(self, url: str, reconnect_seconds: float = 10.0) -> None:
        self.url = url
        self.database = Database(url, _meta, reconnect_seconds)
        self.engine = self.database.engine

    def _call(self, work: Callable[[sa.Connection], T], write: bool = False) -> T:
        return self.database.call(work, write)

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
