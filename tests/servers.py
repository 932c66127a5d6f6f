"""Real servers for integration tests, started on 127.0.0.1 and stopped by the tests."""

from __future__ import annotations

import glob
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, timeout: float = 30.0, process: subprocess.Popen[bytes] | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"server process exited with {process.returncode} before listening on {port}")
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise TimeoutError(f"nothing listened on 127.0.0.1:{port} within {timeout} s")


def _pg_bin(tool: str) -> str:
    found = shutil.which(tool) or next(iter(sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{tool}"))), None)
    if found is None:
        raise RuntimeError(
            f"PostgreSQL's {tool} is not installed; `make test` installs it (apt-get install postgresql)"
        )
    return found


class Postgres:
    """A throwaway PostgreSQL cluster on 127.0.0.1 that a test can stop and start again."""

    def __init__(self) -> None:
        self.data = Path(tempfile.mkdtemp(prefix="kappa-pg-"))
        self.prefix: list[str] = []
        if os.geteuid() == 0:  # initdb refuses to run as root
            shutil.chown(self.data, "postgres", "postgres")
            self.prefix = ["runuser", "-u", "postgres", "--"]
        self.port = free_port()
        self.url = f"postgresql+psycopg://postgres@127.0.0.1:{self.port}"
        initdb = [_pg_bin("initdb"), "-D", str(self.data / "db"), "-U", "postgres", "--auth=trust"]
        subprocess.run([*self.prefix, *initdb, "-E", "UTF8"], check=True, capture_output=True)

    def _ctl(self, *args: str, check: bool = True) -> None:
        command = [*self.prefix, _pg_bin("pg_ctl"), "-D", str(self.data / "db"), *args]
        subprocess.run(command, check=check, capture_output=True)

    def start(self) -> None:
        options = (
            f"-c listen_addresses=127.0.0.1 -c port={self.port} -c unix_socket_directories={self.data} "
            "-c fsync=off"
        )
        self._ctl("-o", options, "-l", str(self.data / "log"), "-w", "start")
        wait_for_port(self.port)

    def stop(self, mode: str = "fast") -> None:
        """``fast``: disconnect every client and shut down cleanly; ``immediate``: like a crash."""
        self._ctl("-m", mode, "-w", "stop", check=False)

    def remove(self) -> None:
        self.stop("immediate")
        shutil.rmtree(self.data, ignore_errors=True)


@contextmanager
def postgres() -> Iterator[str]:
    """A throwaway PostgreSQL cluster; yields ``postgresql+psycopg://postgres@127.0.0.1:PORT``."""
    server = Postgres()
    try:
        server.start()
        yield server.url
    finally:
        server.remove()


def create_database(server_url: str, name: str) -> str:
    import sqlalchemy as sa

    engine = sa.create_engine(f"{server_url}/postgres", isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    engine.dispose()
    return f"{server_url}/{name}"


S3_ENV = {
    "AWS_ACCESS_KEY_ID": "kappa-test",
    "AWS_SECRET_ACCESS_KEY": "kappa-test",
    "AWS_DEFAULT_REGION": "us-east-1",
}


@contextmanager
def s3_server() -> Iterator[str]:
    """A moto S3 server on 127.0.0.1; yields its endpoint URL."""
    with s3_server_process() as (endpoint, _):
        yield endpoint


@contextmanager
def s3_server_process() -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """A moto S3 server on 127.0.0.1 in its own process; yields its endpoint URL and the process
    (a test may stop it with SIGSTOP: a store that accepts connections and never answers)."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_port(port, process=process)
        endpoint = f"http://127.0.0.1:{port}"
        urllib.request.urlopen(endpoint, timeout=10).close()
        yield endpoint, process
    finally:
        process.send_signal(signal.SIGCONT)
        process.terminate()
        process.wait(timeout=10)


class RestartableS3:
    """A moto S3 server in this process, so that its buckets outlive a stop: ``stop()`` makes the
    endpoint refuse connections (a store that went away), ``start()`` brings it back on the same
    port with what it held."""

    def __init__(self) -> None:
        from moto.server import ThreadedMotoServer

        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=self.port, verbose=False)

    def start(self) -> None:
        self._server.start()
        wait_for_port(self.port)

    def stop(self) -> None:
        self._server.stop()


def spark_home() -> Path:
    import pyspark

    return Path(pyspark.__file__).resolve().parent


@contextmanager
def spark_standalone(
    workdir: Path, python: str = sys.executable, workers: int = 1, cores: int = 2
) -> Iterator[str]:
    """A Spark standalone master and ``workers`` workers of ``cores`` cores each, from the
    installed pyspark; yields ``spark://...``. ``python``: the workers' own Python
    (``PYSPARK_PYTHON``)."""
    import json

    home = spark_home()
    workdir.mkdir(parents=True, exist_ok=True)
    env = {
        **os.environ,
        "SPARK_HOME": str(home),
        "SPARK_LOCAL_IP": "127.0.0.1",
        "PYSPARK_PYTHON": python,
        "SPARK_LOG_DIR": str(workdir / "logs"),
        "SPARK_WORKER_DIR": str(workdir / "work"),
    }
    port, ui = free_port(), free_port()
    master = subprocess.Popen(
        [
            str(home / "bin" / "spark-class"),
            "org.apache.spark.deploy.master.Master",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--webui-port",
            str(ui),
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=(workdir / "master.log").open("wb"),
    )
    started: list[subprocess.Popen[bytes]] = []
    try:
        wait_for_port(port, timeout=60, process=master)
        url = f"spark://127.0.0.1:{port}"
        for number in range(workers):
            command = [str(home / "bin" / "spark-class"), "org.apache.spark.deploy.worker.Worker"]
            command += ["--host", "127.0.0.1", "--webui-port", str(free_port()), "--cores", str(cores)]
            log = (workdir / f"worker-{number}.log").open("wb")
            started.append(
                subprocess.Popen(
                    [*command, "--memory", "2g", url], env=env, stdout=subprocess.DEVNULL, stderr=log
                )
            )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{ui}/json/", timeout=5) as response:
                    if json.load(response).get("aliveworkers", 0) >= workers:
                        break
            except (OSError, ValueError):
                pass  # the web UI starts after the RPC port, and may answer HTML before JSON
            time.sleep(0.5)
        else:
            raise TimeoutError(f"{workers} Spark worker(s) did not register with {url} within 60 s")
        yield url
    finally:
        for process in [*started, master]:
            process.terminate()
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()


@contextmanager
def dask_cluster(workdir: Path, workers: int = 2, python: str = sys.executable) -> Iterator[str]:
    """A ``dask scheduler`` and ``workers`` single-threaded worker processes (with nannies) on 127.0.0.1;
    the workers run on ``python`` (e.g. an unpacked ``kappa pack-env`` environment).

    Yields the scheduler address. Workers run in ``workdir`` (not the test's working
    directory), so nothing reaches them through relative paths.
    """
    dask = str(Path(sys.executable).parent / "dask")
    workdir.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "DASK_DISTRIBUTED__WORKER__DAEMON": "False"}
    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    processes = [
        subprocess.Popen(
            [dask, "scheduler", "--host", "127.0.0.1", "--port", str(port), "--no-dashboard"],
            cwd=workdir,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=(workdir / "scheduler.log").open("wb"),
        )
    ]
    try:
        wait_for_port(port, timeout=60, process=processes[0])
        for number in range(workers):
            processes.append(
                subprocess.Popen(
                    [
                        python,
                        "-m",
                        "distributed.cli.dask_worker",
                        address,
                        "--host",
                        "127.0.0.1",
                        "--nthreads",
                        "1",
                        "--no-dashboard",
                        "--local-directory",
                        str(workdir / f"worker-{number}"),
                        "--name",
                        f"worker-{number}",
                    ],
                    cwd=workdir,
                    env=env,
                    stdout=subprocess.DEVNULL,
                    stderr=(workdir / f"worker-{number}.log").open("wb"),
                )
            )
        from distributed import Client

        with Client(address, timeout="30s") as client:
            client.wait_for_workers(workers, timeout=90)
        yield address
    finally:
        for process in reversed(processes):
            process.terminate()
        for process in reversed(processes):
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()


@dataclass(frozen=True)
class Gamma:
    """A running registry server: its URL, a token per scope, and its own KAPPA_HOME."""

    url: str
    tokens: dict[str, str]
    home: Path
    env: dict[str, str]

    def client_env(self, scope: str = "write") -> dict[str, str]:
        """What a client process needs: the URL and a token (never the server's database)."""
        return {"KAPPA_GAMMA_URL": self.url, "KAPPA_GAMMA_TOKEN": self.tokens[scope]}


@contextmanager
def gamma_server(
    home: Path,
    db_url: str | None = None,
    repo_base_url: str | None = None,
    extra_env: dict[str, str] | None = None,
    anonymous_read: bool = False,
) -> Iterator[Gamma]:
    """``kappa gamma-service-start`` as a real process on 127.0.0.1, with read/write/admin tokens."""
    kappa = str(Path(sys.executable).parent / "kappa")
    env = {k: v for k, v in os.environ.items() if not k.startswith("KAPPA_")}
    env.update({"KAPPA_HOME": str(home), **(extra_env or {})})
    db = ["--db-url", db_url] if db_url else []
    tokens = {}
    for scope in ("read", "write", "admin"):
        made = subprocess.run(
            [kappa, "gamma", "token", "create", "--scope", scope, "-q", *db],
            env=env, capture_output=True, text=True, check=True,
        )  # fmt: skip
        tokens[scope] = made.stdout.strip().splitlines()[-1]
    port = free_port()
    command = [kappa, "gamma-service-start", "--port", str(port), *db]
    if repo_base_url:
        command += ["--repo-base-url", repo_base_url]
    if anonymous_read:
        command.append("--allow-anonymous-read")
    log = open(home / "gamma-server.log", "wb")  # noqa: SIM115 (closed below)
    process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_for_port(port, process=process)
        yield Gamma(f"http://127.0.0.1:{port}", tokens, home, env)
    finally:
        process.terminate()
        process.wait(timeout=20)
        log.close()
