"""The Gamma registry server under three loads, each against a real `kappa gamma-service-start`
process on 127.0.0.1 with its own KAPPA_HOME (every client gets another, empty one).

1. `kappa list IrisClassifier --limit N` of N=1,000 versions through the server: wall time of
   the whole CLI process, median of --runs interleaved runs (budget: under 1 s). Beside it the
   same listing straight from the server's database (no server), and, when
   bench/.venv-peers/bin/mlflow exists, an MLflow tracking server holding N versions of one
   registered model, timed as a whole `python -c` process calling
   `MlflowClient(url).search_model_versions(max_results=N)`.
2. 20 client processes call `svc.save()` at the same moment while another process keeps
   calling `kappa.load("IrisClassifier:latest")`: every saved version must be listed, ready and
   loadable (files verified), and no `latest` load may fail.
3. A bundle whose artifact is one 1 GB random file (a custom artifact that copies a file, so
   nothing holds it in memory): upload (`RemoteRepository.add_folder`) then download
   (`local_path`) by client processes. VmRSS of the server and of the client is sampled every
   50 ms; each may grow by less than 100 MB. MB/s are bundle bytes over the client's wall time.

The 1,000 listed versions are one real saved bundle plus rows registered through the metadata
store with its manifest and its files' location (as bench/cli_list.py does, so any of them
loads). --small: 200 versions, 100 MB, 3 runs. Peers run from bench/.venv-peers.
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

ROOT = Path(__file__).resolve().parents[1]
PEERS = ROOT / "bench" / ".venv-peers" / "bin"
KAPPA = str(Path(sys.executable).parent / "kappa")
NAME = "IrisClassifier"
SAVERS = 20
RSS_BUDGET_MB = 100.0
MB = 1024**2

# Every child program starts with this: it talks to the benchmark in "@@ {json}" lines on
# stdout and waits for a line on stdin before the part that is measured.
PRELUDE = """
import json, sys, time
def say(event, **data):
    print("@@ " + json.dumps({"event": event, **data}), flush=True)
def wait_go():
    sys.stdin.readline()
"""

POPULATE = """
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression
from examples.iris.service import IrisClassifier
from kappa.repository import open_repository
from kappa.repository.repository import summary
X, y = load_iris(return_X_y=True)
model = LogisticRegression(max_iter=500).fit(X, y)
svc = IrisClassifier().pack("model", model)
svc.save(labels={"framework": "sklearn"})
repo = open_repository()
m = svc.manifest
uri = repo.get(f"{m.name}:{m.version}").uri  # the listing rows point at a real bundle's files
for i in range(int(sys.argv[1]) - 2):
    v = f"bench-{i:05d}"
    repo.metadata.add_pending(m.name, v, uri, {"framework": "sklearn", "i": str(i % 10)})
    repo.metadata.mark_ready(m.name, v, m.digest, summary(m), m.to_dict())
# the newest version is a real one: `latest` downloads must match their record, and do
IrisClassifier().pack("model", model).save(labels={"framework": "sklearn"})
"""

SAVER = """
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression
from examples.iris.service import IrisClassifier
X, y = load_iris(return_X_y=True)
svc = IrisClassifier().pack("model", LogisticRegression(max_iter=500).fit(X, y))
say("ready")
wait_go()
start = time.perf_counter()
try:
    svc.save(labels={"framework": "sklearn", "bench": "concurrent"})
    say("done", version=svc.version, seconds=time.perf_counter() - start)
except Exception as exc:
    say("done", version=None, error=f"{type(exc).__name__}: {exc}", seconds=time.perf_counter() - start)
"""

LOADER = """
import os, kappa
stop = sys.argv[1]
kappa.load("IrisClassifier:latest")  # imports (pandas, sklearn) done before the measured loop
say("ready")
wait_go()
ok, failed, errors, versions, seconds = 0, 0, [], set(), []
while not os.path.exists(stop):
    start = time.perf_counter()
    try:
        svc = kappa.load("IrisClassifier:latest")
        versions.add(svc.version)
        ok += 1
    except Exception as exc:
        failed += 1
        errors.append(f"{type(exc).__name__}: {exc}"[:300])
        time.sleep(0.05)
    seconds.append(time.perf_counter() - start)
say("summary", ok=ok, failed=failed, errors=errors[:3], versions=len(versions),
    median=sorted(seconds)[len(seconds) // 2] if seconds else 0.0)
"""

CHECK = """
import kappa
from kappa.repository import open_repository
repo = open_repository()
listed = {r.version: r for r in repo.list("IrisClassifier", limit=100000)}
report = {}
for version in json.loads(sys.argv[1]):
    record = listed.get(version)
    if record is None:
        report[version] = "not listed"
    elif record.status != "ready" or not record.digest:
        report[version] = f"listed as {record.status}, digest {record.digest!r}"
    else:
        try:
            report[version] = "ok" if kappa.load(f"IrisClassifier:{version}").version == version else "wrong"
        except Exception as exc:
            report[version] = f"{type(exc).__name__}: {exc}"[:300]
say("checked", report=report)
"""

BIG_SERVICE = """
import shutil
from pathlib import Path

import kappa
from kappa.adapters import JsonInput
from kappa.frameworks.base import BaseArtifact


class FileArtifact(BaseArtifact):
    \"\"\"One file, copied into the bundle as it is (never read into memory).\"\"\"

    def _validate(self, obj):
        if not Path(obj).is_file():
            raise ValueError(f"{obj} is not a file")

    def _save(self, obj, path):
        shutil.copyfile(obj, path / "blob.bin")

    def _load(self, path):
        return path / "blob.bin"


@kappa.artifacts([FileArtifact("blob")])
class BigBlob(kappa.BentoService):
    @kappa.api(input=JsonInput())
    def size(self, payload):
        return self.artifacts.blob.stat().st_size
"""

BUILD_BIG = """
import os
from gamma_big_service import BigBlob
from kappa.bundle.save import save_to_dir
blob, size, target = sys.argv[1], int(sys.argv[2]), sys.argv[3]
with open(blob, "wb") as out:
    left = size
    while left:
        piece = os.urandom(min(left, 8 << 20))
        out.write(piece)
        left -= len(piece)
save_to_dir(BigBlob().pack("blob", blob), target, version="v1")
os.remove(blob)
say("built")
"""

UPLOAD = """
from pathlib import Path
from kappa.bundle.manifest import load_manifest
from kappa.repository import open_repository, tarstream
repo = open_repository()
folder = Path(sys.argv[1])
load_manifest(folder)
say("ready", repository=type(repo).__name__)
wait_go()
start = time.perf_counter()
record = repo.add_folder(folder)
say("done", seconds=time.perf_counter() - start, tag=record.tag)
"""

DOWNLOAD = """
from kappa.bundle.integrity import verify
from kappa.bundle.manifest import load_manifest
from kappa.repository import archive, open_repository
repo = open_repository()
record = repo.get(sys.argv[1])
say("ready")
wait_go()
start = time.perf_counter()
path = repo.local_path(record)
say("done", seconds=time.perf_counter() - start)
manifest = load_manifest(path)
verify(path, manifest.all_files)
say("verified", digest=manifest.digest == record.digest)
"""

MLFLOW_POPULATE = """
import sys
from mlflow import MlflowClient
uri = sys.argv[1]
client = MlflowClient(tracking_uri=uri, registry_uri=uri)
client.create_registered_model("IrisClassifier")
for i in range(int(sys.argv[2])):
    client.create_model_version("IrisClassifier", f"s3://bench/iris/{i}")
"""

MLFLOW_SEARCH = (
    "import sys; from mlflow import MlflowClient; "
    "found = MlflowClient(sys.argv[1]).search_model_versions(\"name='IrisClassifier'\", "
    "max_results=int(sys.argv[2])); print(len(found))"
)


# -- processes ---------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def clean_env(home: Path, **extra: str) -> dict[str, str]:
    """The environment minus any KAPPA_* of the caller, with its own KAPPA_HOME."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("KAPPA_")}
    return {**env, "KAPPA_HOME": str(home), **extra}


class Processes:
    """Every process the benchmark starts, each in its own session; `close` ends them all."""

    def __init__(self, logs: Path) -> None:
        self.logs = logs
        self.started: list[subprocess.Popen[str]] = []

    def start(self, name: str, cmd: list[str], env: dict[str, str], **kwargs: Any) -> subprocess.Popen[str]:
        log = open(self.logs / f"{name}.log", "w")  # noqa: SIM115 (closed with the process)
        proc = subprocess.Popen(
            cmd, env=env, stderr=log, text=True, start_new_session=True, cwd=kwargs.pop("cwd", ROOT), **kwargs
        )
        log.close()
        self.started.append(proc)
        return proc

    def log_tail(self, name: str, chars: int = 1500) -> str:
        path = self.logs / f"{name}.log"
        return path.read_text(errors="replace")[-chars:] if path.exists() else ""

    def close(self) -> None:
        for proc in self.started:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + 15
        for proc in self.started:
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
            for stream in (proc.stdin, proc.stdout):
                if stream is not None:
                    stream.close()


class Child:
    """A `python -c` child speaking the PRELUDE protocol."""

    def __init__(self, procs: Processes, name: str, code: str, args: list[str], env: dict[str, str]) -> None:
        self.name, self.procs = name, procs
        self.proc = procs.start(
            name,
            [sys.executable, "-c", PRELUDE + code, *args],
            env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        self.events: queue.Queue[dict[str, Any] | None] = queue.Queue()
        threading.Thread(target=self._read, args=(self.proc.stdout,), daemon=True).start()

    def _read(self, stream: IO[str]) -> None:
        for line in stream:
            if line.startswith("@@ "):
                self.events.put(json.loads(line[3:]))
        self.events.put(None)

    def expect(self, event: str, timeout: float) -> dict[str, Any]:
        try:
            got = self.events.get(timeout=timeout)
        except queue.Empty:
            raise RuntimeError(f"{self.name}: no {event!r} within {timeout:.0f} s") from None
        if got is None:
            self.proc.wait(10)
            tail = self.procs.log_tail(self.name)
            raise RuntimeError(f"{self.name} ended (rc {self.proc.returncode}) before {event!r}:\n{tail}")
        if got["event"] != event:
            raise RuntimeError(f"{self.name} said {got} where {event!r} was expected")
        return got

    def go(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write("go\n")
        self.proc.stdin.flush()


def run_child(
    procs: Processes, name: str, code: str, args: list[str], env: dict[str, str], event: str, timeout: float
) -> dict[str, Any]:
    child = Child(procs, name, code, args, env)
    result = child.expect(event, timeout)
    child.proc.wait(30)
    return result


def wait_http(
    url: str, proc: subprocess.Popen[str], timeout: float, what: str, log: Callable[[], str]
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited (rc {proc.returncode}):\n{log()}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 (127.0.0.1)
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{what} did not answer {url} within {timeout:.0f} s:\n{log()}")


def vm_rss_kb(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


class RssSampler:
    """Peak VmRSS of some processes, read every 50 ms from a thread, over their level at start."""

    def __init__(self, pids: dict[str, int], interval: float = 0.05) -> None:
        self.pids = pids
        self.interval = interval
        self.before = {name: vm_rss_kb(pid) for name, pid in pids.items()}
        self.peak = dict(self.before)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            for name, pid in self.pids.items():
                self.peak[name] = max(self.peak[name], vm_rss_kb(pid))
            self._stop.wait(self.interval)

    def growth_mb(self) -> dict[str, float]:
        self._stop.set()
        self._thread.join()
        return {name: (self.peak[name] - self.before[name]) / 1024 for name in self.pids}


# -- the server ----------------------------------------------------------------
class Gamma:
    def __init__(self, procs: Processes, home: Path) -> None:
        self.home = home
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        cmd = [KAPPA, "gamma-service-start", "--host", "127.0.0.1", "--port", str(self.port)]
        self.proc = procs.start("gamma", cmd, clean_env(home), stdout=subprocess.DEVNULL, cwd=home)
        wait_http(
            f"{self.url}/healthz", self.proc, 60, "kappa gamma-service-start", lambda: procs.log_tail("gamma")
        )
        made = subprocess.run(
            [KAPPA, "gamma", "token", "create", "--scope", "write", "-q"],
            env=clean_env(home),
            capture_output=True,
            text=True,
            check=True,
        )
        self.token = made.stdout.strip().splitlines()[-1]

    def client_env(self, home: Path) -> dict[str, str]:
        return clean_env(home, KAPPA_GAMMA_URL=self.url, KAPPA_GAMMA_TOKEN=self.token)


def timed(cmd: list[str], env: dict[str, str]) -> tuple[float, str]:
    start = time.perf_counter()
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd="/")
    elapsed = time.perf_counter() - start
    if out.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[:3])} ... failed: {out.stderr[-800:]}")
    return elapsed, out.stdout


def verdict(ok: bool) -> str:
    return "OK" if ok else "MISSED"


# -- 1. listing ---------------------------------------------------------------
def start_mlflow(procs: Processes, tmp: Path, versions: int) -> tuple[list[str], dict[str, str]]:
    """An MLflow tracking server holding ``versions`` versions of one model; its search command."""
    db = f"sqlite:///{tmp / 'mlflow' / 'mlflow.db'}"
    (tmp / "mlflow").mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KAPPA_", "MLFLOW_"))}
    filled = subprocess.run(
        [str(PEERS / "python"), "-c", MLFLOW_POPULATE, db, str(versions)],
        env=env,
        capture_output=True,
        text=True,
        cwd=tmp / "mlflow",
    )
    if filled.returncode != 0:
        raise RuntimeError(f"registering the MLflow versions failed: {filled.stderr[-800:]}")
    port = free_port()
    cmd = [
        str(PEERS / "mlflow"),
        "server",
        "--backend-store-uri",
        db,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        "1",
    ]
    server = procs.start("mlflow", cmd, env, stdout=subprocess.DEVNULL, cwd=tmp / "mlflow")
    url = f"http://127.0.0.1:{port}"
    wait_http(f"{url}/health", server, 120, "mlflow server", lambda: procs.log_tail("mlflow"))
    return [str(PEERS / "python"), "-c", MLFLOW_SEARCH, url, str(versions)], env


def bench_list(procs: Processes, tmp: Path, gamma: Gamma, versions: int, runs: int, peers: bool) -> None:
    limit = ["list", NAME, "--limit", str(versions)]
    cases: list[tuple[str, list[str], dict[str, str]]] = [
        ("kappa list via Gamma", [KAPPA, *limit], gamma.client_env(tmp / "client-list")),
        ("kappa list, local database", [KAPPA, *limit], clean_env(gamma.home)),
    ]
    if peers and (PEERS / "mlflow").exists():
        try:
            cmd, env = start_mlflow(procs, tmp, versions)
            cases.append(("mlflow server search_model_versions", cmd, env))
        except Exception as exc:  # the peer is a reference: its failure does not stop the run
            print(f"MLflow peer left out: {exc}")
    elif peers:
        print(f"MLflow peer left out: no {PEERS / 'mlflow'}")
    counts: dict[str, int] = {}
    for name, cmd, env in list(cases):  # warm up, and check what each prints
        try:
            _, out = timed(cmd, env)
        except RuntimeError as exc:
            if name.startswith("mlflow"):
                print(f"MLflow peer left out: {exc}")
                cases.remove((name, cmd, env))
                continue
            raise
        lines = out.strip().splitlines()
        counts[name] = int(lines[-1]) if name.startswith("mlflow") else len(lines) - 1
    times: dict[str, list[float]] = {name: [] for name, _, _ in cases}
    for _ in range(runs):
        for name, cmd, env in cases:
            times[name].append(timed(cmd, env)[0])
    medians = {name: statistics.median(values) for name, values in times.items()}
    peer = next((m for name, m in medians.items() if name.startswith("mlflow")), None)
    print(f"\n1. listing {versions} versions, whole process, median of {runs}")
    print(f"{'command':<38} {'versions':>8} {'median s':>9} {'min s':>7} {'x mlflow':>9}")
    for name, median in medians.items():
        ratio = f"{median / peer:>9.2f}" if peer else f"{'-':>9}"
        print(f"{name:<38} {counts[name]:>8} {median:>9.3f} {min(times[name]):>7.3f} {ratio}")
    through = medians["kappa list via Gamma"]
    ok = through < 1.0 and counts["kappa list via Gamma"] == versions
    print(
        f"verdict: kappa list of {counts['kappa list via Gamma']} versions through Gamma in "
        f"{through:.3f} s: {verdict(ok)} (budget 1 s)"
    )


# -- 2. concurrent saves ---------------------------------------------------------
def bench_concurrent(procs: Processes, tmp: Path, gamma: Gamma) -> None:
    stop = tmp / "stop-loader"
    loader = Child(procs, "loader", LOADER, [str(stop)], gamma.client_env(tmp / "client-loader"))
    savers = [
        Child(procs, f"saver-{i:02d}", SAVER, [], gamma.client_env(tmp / f"client-saver-{i:02d}"))
        for i in range(SAVERS)
    ]
    loader.expect("ready", 120)
    for saver in savers:
        saver.expect("ready", 600)
    loader.go()
    time.sleep(1.0)  # the loader is looping before the first save starts
    start = time.perf_counter()
    for saver in savers:
        saver.go()
    results = [saver.expect("done", 600) for saver in savers]
    wall = time.perf_counter() - start
    time.sleep(1.0)  # and keeps going after the last save
    stop.touch()
    loads = loader.expect("summary", 120)
    saved = [r["version"] for r in results if r.get("version")]
    for r in results:
        if r.get("error"):
            print(f"  a save failed: {r['error'][:300]}")
    report = run_child(
        procs, "check", CHECK, [json.dumps(saved)], gamma.client_env(tmp / "client-check"), "checked", 600
    )["report"]
    complete = [v for v, state in report.items() if state == "ok"]
    for version, state in report.items():
        if state != "ok":
            print(f"  {NAME}:{version}: {state}")
    save_times = [r["seconds"] for r in results]
    print(f"\n2. {SAVERS} concurrent save() processes against one server, `latest` loaded in a loop")
    print(f"{'what':<38} {'value':>12}")
    print(f"{'saves returned a version':<38} {len(saved):>12}")
    print(f"{'listed, ready and loadable':<38} {len(complete):>12}")
    print(f"{'wall time of all saves, s':<38} {wall:>12.2f}")
    one_save = f"{statistics.median(save_times):.2f} / {max(save_times):.2f}"
    print(f"{'one save, median / max s':<38} {one_save:>12}")
    print(f"{'latest loads ok / failed':<38} {str(loads['ok']) + ' / ' + str(loads['failed']):>12}")
    print(f"{'versions seen as latest':<38} {loads['versions']:>12}")
    print(f"{'one latest load, median s':<38} {loads['median']:>12.3f}")
    for error in loads["errors"]:
        print(f"  a latest load failed: {error}")
    print(
        f"verdict: {len(complete)}/{SAVERS} concurrent saves listed and complete: "
        f"{verdict(len(complete) == SAVERS)}"
    )
    print(
        f"verdict: {loads['failed']} of {loads['ok'] + loads['failed']} latest loads failed during the "
        f"saves: {verdict(loads['failed'] == 0 and loads['ok'] > 0)}"
    )


# -- 3. a big bundle --------------------------------------------------------------
def bench_big(procs: Processes, tmp: Path, gamma: Gamma, size: int) -> None:
    source = tmp / "big-src"
    source.mkdir()
    (source / "gamma_big_service.py").write_text(BIG_SERVICE)
    folder = tmp / "big-bundle" / "BigBlob"
    build_env = clean_env(tmp / "client-build", PYTHONPATH=str(source))
    run_child(
        procs, "build", BUILD_BIG, [str(tmp / "blob.bin"), str(size), str(folder)], build_env, "built", 900
    )
    total = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
    rows = []
    for phase, code, args in (
        ("upload", UPLOAD, [str(folder)]),
        ("download", DOWNLOAD, ["BigBlob:v1"]),
    ):
        child = Child(procs, phase, code, args, gamma.client_env(tmp / f"client-{phase}"))
        child.expect("ready", 120)
        time.sleep(0.3)  # let both settle before the baseline
        sampler = RssSampler({"client": child.proc.pid, "server": gamma.proc.pid})
        child.go()
        done = child.expect("done", 1800)
        growth = sampler.growth_mb()
        if phase == "download":
            checked = child.expect("verified", 900)
            if not checked["digest"]:
                print("  the downloaded bundle's digest differs from the registry's")
        child.proc.wait(60)
        rows.append(
            (phase, done["seconds"], total / MB / done["seconds"], growth["client"], growth["server"])
        )
    print(
        f"\n3. a {total / MB:.0f} MB bundle (one {size / MB:.0f} MB artifact file), VmRSS sampled every 50 ms"
    )
    print(f"{'phase':<10} {'s':>7} {'MB/s':>8} {'client +MB':>11} {'server +MB':>11}")
    for phase, seconds, rate, client, server in rows:
        print(f"{phase:<10} {seconds:>7.2f} {rate:>8.1f} {client:>11.1f} {server:>11.1f}")
    for phase, _, _, client, server in rows:
        ok = client < RSS_BUDGET_MB and server < RSS_BUDGET_MB
        print(
            f"verdict: {phase} of {total / MB:.0f} MB grew the client by {client:.1f} MB and the server by "
            f"{server:.1f} MB: {verdict(ok)} (budget {RSS_BUDGET_MB:.0f} MB each)"
        )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--small", action="store_true", help="200 versions, a 100 MB bundle, 3 runs")
    parser.add_argument("--skip-peers", action="store_true", help="leave MLflow out")
    args = parser.parse_args()
    versions, size, runs = (200, 100 * MB, 3) if args.small else (1000, 1024 * MB, 7)
    with tempfile.TemporaryDirectory(prefix="kappa-gamma-bench-") as name:
        tmp = Path(name)
        (tmp / "logs").mkdir()
        procs = Processes(tmp / "logs")
        try:
            home = tmp / "server"
            run_child(
                procs,
                "populate",
                POPULATE + "\nsay('populated')",
                [str(versions)],
                clean_env(home),
                "populated",
                600,
            )
            gamma = Gamma(procs, home)
            print(f"Gamma at {gamma.url}, {versions} versions of {NAME}")
            bench_list(procs, tmp, gamma, versions, runs, not args.skip_peers)
            bench_concurrent(procs, tmp, gamma)
            bench_big(procs, tmp, gamma, size)
        finally:
            procs.close()


if __name__ == "__main__":
    main()
