"""Shared fixtures: an isolated KAPPA_HOME per test, and service modules written to disk."""

from __future__ import annotations

import importlib
import itertools
import os
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

_counter = itertools.count()


@pytest.fixture(autouse=True)
def kappa_home(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path_factory.mktemp("kappa_home")
    monkeypatch.setenv("KAPPA_HOME", str(home))
    for var in ("KAPPA_DB_URL", "KAPPA_BASE_URL", "KAPPA_GAMMA_URL", "KAPPA_GAMMA_TOKEN"):
        monkeypatch.delenv(var, raising=False)
    return home


@pytest.fixture
def make_module(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., ModuleType]]:
    """Write ``source`` as a module file (plus optional helper modules) and import it.

    Services must live in real module files, as they do for users.
    """
    added: list[tuple[str, list[str]]] = []

    def make(source: str, helpers: dict[str, str] | None = None, name: str | None = None) -> ModuleType:
        root = tmp_path_factory.mktemp("svc")
        module_name = name or f"svc_module_{next(_counter)}"
        names = [module_name]
        for helper, text in (helpers or {}).items():
            (root / f"{helper}.py").write_text(textwrap.dedent(text))
            names.append(helper)
        (root / f"{module_name}.py").write_text(textwrap.dedent(source))
        sys.path.insert(0, str(root))
        added.append((str(root), names))
        importlib.invalidate_caches()
        return importlib.import_module(module_name)

    yield make
    for root, names in added:
        if root in sys.path:
            sys.path.remove(root)
        for n in names:
            sys.modules.pop(n, None)


@pytest.fixture(scope="session")
def iris() -> tuple[object, object, object]:
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    X, y = load_iris(return_X_y=True)
    return X, y, LogisticRegression(max_iter=1000).fit(X, y)


IRIS_SERVICE = """
import kappa
from kappa.adapters import DataframeInput, JsonInput
from kappa.frameworks.sklearn import SklearnModelArtifact

@kappa.env(infer_pip_packages=True)
@kappa.artifacts([SklearnModelArtifact("model")])
class IrisClassifier(kappa.BentoService):
    @kappa.api(input=DataframeInput(), batch=True)
    def predict(self, df):
        return self.artifacts.model.predict(df)
"""


@pytest.fixture
def iris_service(make_module: Callable[..., ModuleType], iris: tuple[object, object, object]) -> object:
    """A packed IrisClassifier instance."""
    module = make_module(IRIS_SERVICE)
    svc = module.IrisClassifier()
    svc.pack("model", iris[2], metadata={"accuracy": 0.97, "features": ["a", "b", "c", "d"]})
    return svc


CLUSTER_MARKS = {"spark", "airflow"}  # tests that run JVM clusters and Airflow: both cores each


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--clusters",
        choices=("all", "only", "none"),
        default="all",
        help="only / none: just the files with Spark or Airflow tests, or every other file "
        "(`make test` runs the two at once, in two processes)",
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """``--clusters only|none``: a file with any Spark or Airflow test goes whole to one side (its
    tests share module fixtures), so no two Spark jobs ever run at once (the Spark fault test
    kills the executors it finds on the machine)."""
    choice = config.getoption("clusters")
    if choice == "all":
        return
    clusters = {item.path for item in items if CLUSTER_MARKS & {mark.name for mark in item.iter_markers()}}
    keep: list[pytest.Item] = []
    dropped: list[pytest.Item] = []
    for item in items:
        (keep if (item.path in clusters) == (choice == "only") else dropped).append(item)
    config.hook.pytest_deselected(items=dropped)
    items[:] = keep


def pytest_configure(config: pytest.Config) -> None:
    """SIGTERM stops the run as Ctrl-C does, so fixtures stop the servers and clusters they started
    (a JVM would outlive a killed pytest). ``make test`` sends it to its background pytest, which
    ignores SIGINT, on Ctrl-C; a CI time-out sends it too. A second SIGTERM kills at once."""
    import signal

    def stop(signum: int, frame: Any) -> None:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        raise KeyboardInterrupt(f"signal {signum}")

    if signal.getsignal(signal.SIGTERM) == signal.SIG_DFL:
        signal.signal(signal.SIGTERM, stop)


def pytest_unconfigure() -> None:
    """py4j closes Spark's gateway connections when Python exits and logs it at INFO, after
    pytest has closed the stream it logs to ("--- Logging error ---"): that line is noise."""
    import logging

    logging.getLogger("py4j").setLevel(logging.WARNING)


# -- team mode: a real PostgreSQL and a real S3-compatible server ------------------


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    from tests.servers import postgres

    with postgres() as url:
        yield url


@pytest.fixture(scope="session")
def spark_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One Spark standalone master and worker for the session's spark-submit tests; yields its URL.
    Executors get their environment from each job (``spark.executorEnv.*``), not from here."""
    from tests.servers import spark_standalone

    with spark_standalone(tmp_path_factory.mktemp("spark-cluster")) as master:
        yield master


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    import boto3

    from tests.servers import S3_ENV, s3_server

    with s3_server() as endpoint:
        client = boto3.client(
            "s3",
            endpoint_url=endpoint,
            region_name="us-east-1",
            aws_access_key_id=S3_ENV["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=S3_ENV["AWS_SECRET_ACCESS_KEY"],
        )
        client.create_bucket(Bucket="kappa-test")
        yield endpoint


@pytest.fixture(params=["local", pytest.param("team", marks=[pytest.mark.postgres, pytest.mark.s3])])
def repo_mode(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Run a test against SQLite + local files, and against PostgreSQL + S3."""
    if request.param == "team":
        import fsspec

        from tests.servers import S3_ENV, create_database

        server = request.getfixturevalue("postgres_server")
        endpoint = request.getfixturevalue("s3_endpoint")
        n = next(_counter)
        monkeypatch.setenv("KAPPA_DB_URL", create_database(server, f"kappa_{os.getpid()}_{n}"))
        monkeypatch.setenv("KAPPA_BASE_URL", f"s3://kappa-test/run-{os.getpid()}-{n}")
        monkeypatch.setenv("FSSPEC_S3_ENDPOINT_URL", endpoint)
        for key, value in S3_ENV.items():
            monkeypatch.setenv(key, value)
        monkeypatch.setitem(fsspec.config.conf, "s3", {"endpoint_url": endpoint})
    return str(request.param)


# -- the registry server (Gamma), as a real process ------------------------------


@pytest.fixture(scope="session")
def gamma(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    """One registry server for the session: SQLite and bundle files on local disk."""
    from tests.servers import gamma_server

    with gamma_server(tmp_path_factory.mktemp("gamma-server")) as server:
        yield server


@pytest.fixture(scope="session")
def gamma_team(
    tmp_path_factory: pytest.TempPathFactory, postgres_server: str, s3_endpoint: str
) -> Iterator[object]:
    """A registry server as a team runs it: PostgreSQL for metadata, S3 for bundle files."""
    from tests.servers import S3_ENV, create_database, gamma_server

    db_url = create_database(postgres_server, f"gamma_{os.getpid()}")
    env = {**S3_ENV, "FSSPEC_S3_ENDPOINT_URL": s3_endpoint}
    base = f"s3://kappa-test/gamma-{os.getpid()}"
    with gamma_server(tmp_path_factory.mktemp("gamma-team"), db_url, base, env) as server:
        yield server


@pytest.fixture
def use_gamma(gamma: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    """This test's repository is the session's registry server, reached with a write token."""
    for key, value in gamma.client_env("write").items():
        monkeypatch.setenv(key, value)
    return gamma
