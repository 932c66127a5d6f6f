"""The repository, run against SQLite + local files and against PostgreSQL + S3."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import tarfile
import textwrap

import pytest
import sqlalchemy as sa

import kappa
from kappa.errors import BundleError, BundleIntegrityError, RepositoryError
from kappa.repository import open_repository
from kappa.repository.files import is_local
from kappa.repository.metadata import DELETED, PENDING, bundles


def _repo():
    return open_repository()


def test_save_stores_files_and_a_ready_row(repo_mode, iris_service, kappa_home, iris):
    location = iris_service.save(labels={"framework": "sklearn"})
    repo = _repo()
    record = repo.get("IrisClassifier:latest")
    assert record.version == iris_service.version
    assert record.uri == location == f"{repo.base_url}/IrisClassifier/{iris_service.version}"
    assert record.status == "ready" and record.digest == iris_service.manifest.digest
    if repo_mode == "local":
        assert location == str(kappa_home / "repository" / "IrisClassifier" / iris_service.version)
        assert repo.metadata.url == f"sqlite:///{kappa_home / 'storage.db'}"
        with repo.metadata.engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
    else:
        assert location.startswith("s3://kappa-test/") and repo.metadata.url.startswith("postgresql")
    loaded = kappa.load("IrisClassifier:latest")
    assert list(loaded.predict(iris[0][:5])) == list(iris_service.predict(iris[0][:5]))
    assert loaded.labels == {"framework": "sklearn"}


def test_latest_is_the_newest_ready_bundle(repo_mode, iris_service):
    iris_service.save(version="v1")
    iris_service.save(version="v2")
    repo = _repo()
    repo.metadata.add_pending("IrisClassifier", "v3-unfinished", "nowhere", {})
    assert repo.get("IrisClassifier:latest").version == "v2"
    assert [r.version for r in repo.list("IrisClassifier")] == ["v2", "v1"]


def test_the_database_enforces_unique_name_and_version(repo_mode, iris_service):
    iris_service.save(version="v1")
    repo = _repo()
    with pytest.raises(sa.exc.IntegrityError), repo.metadata.engine.begin() as conn:
        conn.execute(
            bundles.insert().values(
                name="IrisClassifier",
                version="v1",
                status=PENDING,
                uri="x",
                created_at=0.0,
                updated_at=0.0,
                labels="{}",
                summary="{}",
            )
        )
    with pytest.raises(RepositoryError, match="IrisClassifier:v1 already exists"):
        iris_service.save(version="v1")


FAILING = """
import kappa
from kappa.adapters import JsonInput
from kappa.frameworks.base import BaseArtifact

class Exploding(BaseArtifact):
    def _save(self, obj, path):
        (path / "half-written").write_text("x")
        raise OSError("disk full")

@kappa.artifacts([Exploding("model")])
class Fragile(kappa.BentoService):
    @kappa.api(input=JsonInput(), batch=True)
    def f(self, items):
        return items
"""


def test_a_failed_save_leaves_nothing_behind(repo_mode, make_module):
    svc = make_module(FAILING).Fragile().pack("model", object())
    with pytest.raises(BundleError, match="disk full"):
        svc.save(version="v1")
    repo = _repo()
    with repo.metadata.engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(bundles)).scalar() == 0
    from kappa.repository.files import filesystem

    fs, root = filesystem(repo.base_url)
    fs.invalidate_cache()
    assert not fs.exists(f"{root}/Fragile/v1")
    if is_local(repo.base_url):
        assert not any(p.name.startswith(".") for p in (repo.settings.home / "repository").rglob("*"))


SAVER = """
import sys
sys.path.insert(0, {root!r})
from {module} import IrisClassifier
from sklearn.dummy import DummyClassifier
svc = IrisClassifier()
svc.pack("model", DummyClassifier().fit([[0, 0, 0, 0]], [0]))
svc.save(labels={{"worker": sys.argv[1]}})
print(svc.version)
"""


@pytest.mark.slow
def test_ten_processes_saving_at_once_get_ten_versions(repo_mode, make_module):
    from tests.conftest import IRIS_SERVICE

    module = make_module(IRIS_SERVICE)
    root = os.path.dirname(module.__file__)
    code = SAVER.format(root=root, module=module.__name__)
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", code, str(i)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for i in range(10)
    ]
    results = [p.communicate(timeout=300) for p in procs]
    assert all(p.returncode == 0 for p in procs), [err for _, err in results]
    versions = {out.strip() for out, _ in results}
    assert len(versions) == 10
    listed = _repo().list("IrisClassifier")
    assert {r.version for r in listed} == versions
    assert all(r.status == "ready" for r in listed)
    assert sorted(r.labels["worker"] for r in listed) == sorted(str(i) for i in range(10))


def test_list_selects_by_labels_and_pages(repo_mode, iris_service):
    iris_service.save(version="a", labels={"framework": "sklearn", "stage": "prod"})
    iris_service.save(version="b", labels={"framework": "sklearn", "stage": "qa", "owner": "ana"})
    iris_service.save(version="c", labels={"framework": "xgboost"})
    repo = _repo()

    def versions(selector, **kwargs):
        return [r.version for r in repo.list("IrisClassifier", selector, **kwargs)]

    assert versions("framework=sklearn") == ["b", "a"]
    assert versions("stage!=prod") == ["b"]  # "c" has no stage label: != needs the key
    assert versions("stage DoesNotExist") == ["c"]
    assert versions("stage In (prod, qa), owner DoesNotExist") == ["a"]
    assert versions("stage NotIn (qa)") == ["a"]
    assert versions("framework NotIn (lambda, azure-function)") == ["c", "b", "a"]
    assert versions("owner Exists") == ["b"]
    assert versions(None, limit=1, offset=1) == ["b"]
    assert versions(None, order_by="version", ascending=True) == ["a", "b", "c"]


def test_delete_is_soft_first_then_removes_files(repo_mode, iris_service):
    first = iris_service.save(version="v1")
    iris_service.save(version="v2")
    repo = _repo()
    with pytest.raises(RepositoryError, match="name the version to delete"):
        repo.delete("IrisClassifier:latest")
    repo.delete("IrisClassifier:v2")
    assert repo.get("IrisClassifier:latest").version == "v1"
    deleted = repo.metadata.list("IrisClassifier", statuses=(DELETED,))
    assert [r.version for r in deleted] == ["v2"]
    from kappa.repository.files import filesystem

    fs, root = filesystem(repo.location("IrisClassifier", "v2"))
    fs.invalidate_cache()
    assert not fs.exists(root)
    assert kappa.load("IrisClassifier:v1").bundle_path in (
        first,
        str(_repo().local_path("IrisClassifier:v1")),
    )
    with pytest.raises(RepositoryError, match="already exists"):
        iris_service.save(version="v2")  # a deleted version is never reused


def test_retrieve_never_overwrites(repo_mode, iris_service, tmp_path):
    iris_service.save(version="v1")
    target = _repo().retrieve("IrisClassifier:v1", tmp_path / "copy")
    assert kappa.load(str(target)).version == "v1"
    with pytest.raises(RepositoryError, match="already exists"):
        _repo().retrieve("IrisClassifier:v1", tmp_path / "copy")


def test_export_then_import_into_another_repository(repo_mode, iris_service, tmp_path, monkeypatch, iris):
    iris_service.save(version="v1", labels={"team": "fraud"})
    archive = _repo().export("IrisClassifier:v1", tmp_path / "iris.tar.gz")
    with pytest.raises(RepositoryError, match="already exists"):
        _repo().import_bundle(str(archive))
    monkeypatch.setenv("KAPPA_HOME", str(tmp_path / "other-home"))
    source_uri = None  # team mode imports straight from the bundle's S3 URL
    if repo_mode == "team":
        source_uri = f"{os.environ['KAPPA_BASE_URL']}/IrisClassifier/v1"
    monkeypatch.delenv("KAPPA_DB_URL", raising=False)
    monkeypatch.delenv("KAPPA_BASE_URL", raising=False)
    record = _repo().import_bundle(source_uri or str(archive))
    assert (record.tag, record.labels) == ("IrisClassifier:v1", {"team": "fraud"})
    loaded = kappa.load("IrisClassifier:latest")
    assert list(loaded.predict(iris[0][:3])) == list(iris_service.predict(iris[0][:3]))


def test_import_a_folder_refuses_a_tampered_bundle(iris_service, tmp_path):
    folder = iris_service.save_to_dir(str(tmp_path / "b"))
    (tmp_path / "b" / "artifacts" / "model" / "model.joblib").write_bytes(b"tampered")
    with pytest.raises(BundleIntegrityError):
        _repo().import_bundle(folder)
    assert _repo().list() == []


def _archive(tmp_path, member: tarfile.TarInfo, data: bytes = b"") -> str:
    path = tmp_path / "evil.tar.gz"
    with tarfile.open(path, "w:gz") as archive:
        archive.addfile(member, io.BytesIO(data) if data else None)
    return str(path)


@pytest.mark.parametrize(
    ("kind", "message"),
    [
        ("absolute", "absolute path"),
        ("dotdot", r"outside the archive \(\.\.\)"),
        ("symlink", "the link"),
        ("device", "device or pipe"),
    ],
)
def test_import_refuses_dangerous_archives(tmp_path, kind, message):
    member = tarfile.TarInfo({"absolute": "/tmp/kappa-evil", "dotdot": "b/../../evil"}.get(kind, "b/x"))
    data = b""
    if kind in ("absolute", "dotdot"):
        data = b"boom"
        member.size = len(data)
    elif kind == "symlink":
        member.type, member.linkname = tarfile.SYMTYPE, "/etc/passwd"
    else:
        member.type, member.devmajor, member.devminor = tarfile.CHRTYPE, 1, 3
    with pytest.raises(RepositoryError, match=message):
        _repo().import_bundle(_archive(tmp_path, member, data))
    assert not os.path.exists("/tmp/kappa-evil")


def test_unreachable_database_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("KAPPA_DB_RECONNECT_SECONDS", "0")  # waiting for a restart: tests/faults/
    monkeypatch.setenv("KAPPA_DB_URL", "postgresql+psycopg://nobody@127.0.0.1:1/none")
    with pytest.raises(RepositoryError, match="cannot open the metadata database"):
        _repo()
    monkeypatch.setenv("KAPPA_DB_URL", "not a url")
    with pytest.raises(RepositoryError, match="bad repository.db_url"):
        _repo()


def test_settings_precedence(tmp_path, monkeypatch, kappa_home):
    from kappa.settings import KappaSettings, write_user_config

    conf = tmp_path / "conf"
    conf.mkdir()
    (conf / "kappa.yaml").write_text(
        textwrap.dedent(
            """
        repository:
          db_url: sqlite:///from-conf.db
          base_url: /from/conf
        """
        )
    )
    monkeypatch.setenv("KAPPA_CONF_DIR", str(conf))
    settings = KappaSettings.load()
    assert (settings.db_url, settings.sources["db_url"]) == (
        "sqlite:///from-conf.db",
        str(conf / "kappa.yaml"),
    )
    monkeypatch.setenv("KAPPA_DB_URL", "sqlite:///from-env.db")
    monkeypatch.setenv("KAPPA_BASE_URL", "/from/env")
    settings = KappaSettings.load()
    assert (settings.db_url, settings.base_url) == ("sqlite:///from-env.db", "/from/env")
    write_user_config({"repository.db_url": "sqlite:///from-config-set.db"})
    settings = KappaSettings.load()
    assert settings.db_url == "sqlite:///from-config-set.db"
    assert settings.base_url == "/from/env"
    assert settings.sources["db_url"] == str(kappa_home / "config.yaml")
    flagged = KappaSettings.load(overrides={"repository.db_url": "sqlite:///flag.db"})
    assert (flagged.db_url, flagged.sources["db_url"]) == ("sqlite:///flag.db", "command line")
    (conf / "kappa.yaml").write_text("repository:\n  colour: blue\n")
    with pytest.raises(kappa.errors.ConfigError, match="unknown setting"):
        KappaSettings.load()


@pytest.mark.postgres
def test_a_database_that_does_not_exist_is_said_at_once(postgres_server, monkeypatch):
    """The reconnect window waits for a server that does not answer, not for one that answers no."""
    import time

    monkeypatch.setenv("KAPPA_DB_RECONNECT_SECONDS", "30")
    monkeypatch.setenv("KAPPA_DB_URL", f"{postgres_server}/no_such_database")
    started = time.monotonic()
    with pytest.raises(RepositoryError, match='cannot open .*: .*"no_such_database" does not exist'):
        _repo()
    assert time.monotonic() - started < 10


@pytest.mark.postgres
def test_a_database_dropped_while_open_is_said_at_once(postgres_server, monkeypatch):
    """A store already open whose database goes (or whose login is refused) fails its next call at
    once with the server's answer, not after the reconnect window."""
    import time

    import sqlalchemy as sa

    from kappa.errors import MetadataUnavailable
    from tests.servers import create_database

    monkeypatch.setenv("KAPPA_DB_RECONNECT_SECONDS", "30")
    monkeypatch.setenv("KAPPA_DB_URL", create_database(postgres_server, "dropped_while_open"))
    repo = _repo()
    assert repo.list() == []
    admin = sa.create_engine(f"{postgres_server}/postgres", isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text('DROP DATABASE "dropped_while_open" WITH (FORCE)'))
    admin.dispose()
    started = time.monotonic()
    with pytest.raises(MetadataUnavailable, match='failed: .*"dropped_while_open" does not exist'):
        repo.list()
    assert time.monotonic() - started < 10
