"""Online operations under `wrk` on 127.0.0.1: what hot swap, prediction logging and a log
store outage cost a serving `kappa serve` (one worker, the LogisticRegression of
bench/online_serving.py, one-row JSON requests at 32 connections).

1. Hot swap: `kappa serve OnlineBench:latest --watch --watch-interval 1` over a repository in
   a temporary $KAPPA_HOME. A steady run, then a run of the same length on the same server
   while another process saves three new versions at 1/4, 2/4 and 3/4 of it. Targets: no
   non-2xx answer while swapping, p99(swapping) <= 2 x p99(steady), every swap served.
2. Logging cost: fresh servers without and with `--log-predictions FOLDER --log-sample 1.0`,
   interleaved (off, on, off, on, ...). Target: req/s with logging >= 0.9 x without. The
   shards are read back with pyarrow and their rows compared with the requests answered.
3. S3 outage: `--log-predictions s3://BUCKET/logs --log-flush-seconds 1` on a moto S3
   server, killed with SIGKILL halfway through the run. Targets: no non-2xx answer, the
   rows lost are counted (`kappa_prediction_log_dropped_total` > 0), /readyz still 200.

    .venv/bin/python bench/online_operations.py [--duration 60] [--rounds 2] [--small]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from online_serving import ROW, SERVICE, free_port, start, stop, train, wrk_figures  # noqa: E402

KAPPA = str(Path(sys.executable).parent / "kappa")
NAME = "OnlineBench"  # the service class in online_serving.SERVICE
BODY = json.dumps([ROW])
CONNECTIONS = 32
S3_KEYS = {
    "AWS_ACCESS_KEY_ID": "kappa-test",
    "AWS_SECRET_ACCESS_KEY": "kappa-test",
    "AWS_DEFAULT_REGION": "us-east-1",
}

# wrk: one-row POSTs; each thread tallies the X-Kappa-Version of its answers, printed at the end
VERSIONS_LUA = """
local threads = {}
function setup(thread) table.insert(threads, thread) end
function init(args) seen = {} end
function response(status, headers, body)
  local v = headers["x-kappa-version"] or headers["X-Kappa-Version"] or "-"
  seen[v] = (seen[v] or 0) + 1
end
function done(summary, latency, requests)
  local total = {}
  for _, t in ipairs(threads) do
    for v, n in pairs(t:get("seen")) do total[v] = (total[v] or 0) + n end
  end
  for v, n in pairs(total) do io.write(string.format("version %s %d\\n", v, n)) end
end
"""

# saves the versions given as VERSION@SECONDS, SECONDS after the time read from stdin
SAVER = """
import json, sys, time
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression
from online_bench_service import OnlineBench

import kappa.bundle.save  # imported before the clock starts: a save then costs only its own work
from kappa.repository import open_repository

open_repository()
X, y = load_iris(return_X_y=True)
plan = []
for i, arg in enumerate(sys.argv[1:], 1):
    version, at = arg.split("@")
    model = LogisticRegression(max_iter=1000, C=0.5**i).fit(X, y)
    plan.append((version, float(at), OnlineBench().pack("model", model)))
print("ready", flush=True)
t0 = float(sys.stdin.readline())
for version, at, service in plan:
    time.sleep(max(0.0, t0 + at - time.time()))
    began = time.time()
    service.save(version=version)
    done = time.time()
    print(json.dumps({"version": version, "at": began - t0, "took": done - began, "done": done}), flush=True)
"""


@contextmanager
def environ(**values: str) -> Iterator[None]:
    """``os.environ`` with ``values`` set (what online_serving.start hands its server)."""
    saved = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def wrk(url: str, connections: int, seconds: float, folder: Path, versions: bool = False) -> dict[str, float]:
    """One wrk run; with ``versions`` also the answers per X-Kappa-Version (keys ``v:NAME:VERSION``)."""
    script = folder / ("versions.lua" if versions else "post.lua")
    script.write_text(
        'wrk.method = "POST"\n'
        f"wrk.body = {json.dumps(BODY)}\n"
        'wrk.headers["Content-Type"] = "application/json"\n' + (VERSIONS_LUA if versions else "")
    )
    threads = min(2, connections)
    out = subprocess.run(
        ["wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds:g}s", "--latency", "-s", str(script), url],
        capture_output=True,
        text=True,
        check=True,
    ).stdout

    result = wrk_figures(out)
    for version, count in re.findall(r"^version (\S+) (\d+)$", out, re.MULTILINE):
        result[f"v:{version}"] = float(count)
    return result


def metrics(base: str) -> str:
    with urllib.request.urlopen(f"{base}/metrics", timeout=10) as response:
        return str(response.read().decode())


def sample(text: str, name: str, label: str = "") -> float:
    """The sum of the samples of ``name`` whose labels contain ``label``."""
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name + "{") and label in line:
            total += float(line.rsplit(" ", 1)[1])
    return total


def status_of(url: str, body: str | None = None) -> tuple[int, str]:
    """HTTP status and X-Kappa-Version of a GET (or a POST of ``body``)."""
    data = body.encode() if body is not None else None
    request = urllib.request.Request(url, data, {"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.headers.get("X-Kappa-Version", "-")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers.get("X-Kappa-Version", "-")
    except OSError as exc:
        return 0, type(exc).__name__


def base_of(url: str) -> str:
    return url.rsplit("/", 1)[0]


def verdict(ok: bool, target: str, detail: str) -> str:
    return f"{'PASS' if ok else 'FAIL'} {target}: {detail}"


# -- 1. hot swap ------------------------------------------------------------------------
def hot_swap(folder: Path, args: argparse.Namespace) -> list[str]:
    saves = [(f"v{k + 2}", args.duration * (k + 1) / 4) for k in range(3)]
    command = [KAPPA, "serve", f"{NAME}:latest", "--watch", "--watch-interval", "1", "--port", "{port}"]
    process, url = start(command, "/predict", BODY, folder, folder / "unused")
    saver = None
    done, first_seen = threading.Event(), dict[str, float]()
    try:
        wrk(url, args.connections, args.warmup, folder, versions=True)
        steady = wrk(url, args.connections, args.duration, folder, versions=True)
        print("swap steady", steady, flush=True)
        saver = subprocess.Popen(
            [sys.executable, "saver.py", *(f"{v}@{at:g}" for v, at in saves)],
            cwd=folder,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        assert saver.stdin is not None and saver.stdout is not None
        if saver.stdout.readline().strip() != "ready":
            raise RuntimeError("the saver process did not start")
        watching = threading.Thread(target=watch, args=(base_of(url), done, first_seen), daemon=True)
        watching.start()
        t0 = time.time()
        saver.stdin.write(f"{t0}\n")
        saver.stdin.flush()
        swapping = wrk(url, args.connections, args.duration, folder, versions=True)
        print("swap swapping", swapping, flush=True)
        saved = [json.loads(line) for line in saver.stdout]
        saver.wait(timeout=60)
        time.sleep(2.5)  # the last save may have landed at the very end: give the watcher its look
        done.set()
        watching.join()
        code, final = status_of(url, BODY)
        served = sorted({line for line in re.findall(r'version="([^"]+)"', metrics(base_of(url)))})
    finally:
        done.set()
        if saver is not None and saver.poll() is None:
            stop(saver)  # type: ignore[arg-type]
        stop(process)

    print(
        f"\nHot swap: {NAME}:latest --watch --watch-interval 1, LR, {args.connections} connections, "
        f"{args.duration:g} s each"
    )
    print(
        f"{'run':<9} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'non-2xx':>8} {'socket':>7}  "
        "versions answering"
    )
    for label, r in (("steady", steady), ("swapping", swapping)):
        seen = ", ".join(f"{k[2:]}={int(v)}" for k, v in sorted(r.items()) if k.startswith("v:"))
        print(
            f"{label:<9} {r['rps']:>9,.0f} {r['p50']:>8.2f} {r['p99']:>8.2f} {int(r['non2xx']):>8} "
            f"{int(r['socket']):>7}  {seen}"
        )
    for s in saved:
        first = first_seen.get(f"{NAME}:{s['version']}")
        when = (
            f"served from {first - t0:.1f} s, {first - s['done']:.1f} s after its save"
            if first is not None
            else "never served"
        )
        print(f"saved {NAME}:{s['version']} at {s['at']:.1f} s (took {s['took']:.2f} s); {when}")
    last = f"{NAME}:{saves[-1][0]}"
    print(f"after the run: POST /predict -> {code}, X-Kappa-Version {final}; /metrics versions: {served}")

    distinct = sum(1 for k in swapping if k.startswith("v:") and k != "v:-")
    ratio = swapping["p99"] / steady["p99"]
    return [
        verdict(
            swapping["non2xx"] == 0,
            "swap: zero non-2xx while swapping",
            f"{int(swapping['non2xx'])} non-2xx, {int(swapping['socket'])} socket errors",
        ),
        verdict(
            ratio <= 2.0,
            "swap: p99(swapping) <= 2 x p99(steady)",
            f"{swapping['p99']:.2f} ms vs {steady['p99']:.2f} ms = {ratio:.2f}x",
        ),
        verdict(
            final == last and len(saved) == len(saves) and distinct == len(saves) + 1,
            "swap: every version saved was served",
            f"serving {final} (last saved {last}); {distinct} distinct versions answered during the run",
        ),
    ]


def watch(base: str, done: threading.Event, first_seen: dict[str, float]) -> None:
    """When each version first answered (GET /readyz every 50 ms, its X-Kappa-Version)."""
    while not done.is_set():
        _, version = status_of(f"{base}/readyz")
        first_seen.setdefault(version, time.time())
        done.wait(0.05)


# -- 2. logging cost --------------------------------------------------------------------
def logging_cost(folder: Path, bundle: str, args: argparse.Namespace) -> list[str]:
    rows = []
    for round_ in range(1, args.rounds + 1):
        for mode in ("off", "on"):
            log_dir = folder / f"log-{round_}"
            command = [KAPPA, "serve", bundle, "--port", "{port}"]
            if mode == "on":
                command += ["--log-predictions", str(log_dir), "--log-sample", "1.0"]
            process, url = start(command, "/predict", BODY, folder, folder / "unused")
            try:
                warm = wrk(url, args.connections, args.warmup, folder)
                r = wrk(url, args.connections, args.duration, folder)
                text = metrics(base_of(url))
            finally:
                stop(process)  # SIGTERM: the log's queue is written out before the process leaves
            r["answered"] = 1 + warm["requests"] + r["requests"]  # start()'s probe, warm-up, run
            r["counted"] = sample(text, "kappa_requests_total", 'api="predict"')
            r["dropped"] = sample(text, "kappa_prediction_log_dropped_total", 'log="predictions"')
            if mode == "on":
                import pyarrow.dataset as ds

                shards = log_dir / "predictions"
                r["logged"] = ds.dataset(str(shards), format="parquet").count_rows() if shards.exists() else 0
            print("logging", round_, mode, r, flush=True)
            rows.append((round_, mode, r))

    print(
        f"\nLogging cost: LR, {args.connections} connections, {args.duration:g} s each, "
        "--log-predictions FOLDER --log-sample 1.0 vs no log"
    )
    print(
        f"{'round':>5} {'log':<4} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'errors':>7} "
        f"{'on/off':>7} {'wrk done':>9} {'server':>9} {'logged':>9} {'dropped':>8}"
    )
    ratios, complete = [], True
    for round_, mode, r in rows:
        line = (
            f"{round_:>5} {mode:<4} {r['rps']:>9,.0f} {r['p50']:>8.2f} {r['p99']:>8.2f} "
            f"{int(r['non2xx'] + r['socket']):>7}"
        )
        if mode == "on":
            off = next(o for n, m, o in rows if n == round_ and m == "off")
            ratios.append(r["rps"] / off["rps"])
            complete = complete and r["logged"] == r["counted"] and r["dropped"] == 0
            line += (
                f" {ratios[-1]:>7.2f} {int(r['answered']):>9,} {int(r['counted']):>9,} "
                f"{int(r['logged']):>9,} {int(r['dropped']):>8,}"
            )
        print(line)
    median = statistics.median(ratios)
    print(
        f"median on/off: {median:.2f}. errors: non-2xx + socket errors. wrk done: requests wrk completed "
        "(start's probe, warm-up, run); server: kappa_requests_total, which also counts those in "
        "flight when wrk stopped; logged: rows in the Parquet shards after a graceful stop"
    )
    counted = ", ".join(f"{int(r['counted']):,}" for _, m, r in rows if m == "on")
    return [
        verdict(median >= 0.9, "logging: req/s on >= 0.9 x off", f"median ratio {median:.2f}"),
        verdict(
            complete,
            "logging: every answered row logged, none dropped",
            f"rows logged = requests the server counted ({counted}) in every on-run",
        ),
    ]


# -- 3. S3 outage -----------------------------------------------------------------------
@contextmanager
def moto_server(folder: Path) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=(folder / "moto.log").open("wb"),
        start_new_session=True,
    )
    endpoint = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"moto exited: {(folder / 'moto.log').read_text()[-2000:]}")
            try:
                urllib.request.urlopen(endpoint, timeout=5).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError("moto did not answer within 60 s") from None
                time.sleep(0.3)
        yield process, endpoint
    finally:
        if process.poll() is None:
            os.killpg(process.pid, 9)
        process.wait(timeout=10)


def s3_outage(folder: Path, bundle: str, args: argparse.Namespace) -> list[str]:
    import boto3

    with moto_server(folder) as (moto, endpoint):
        keys = {"aws_access_key_id": "kappa-test", "aws_secret_access_key": "kappa-test"}
        s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", **keys)
        s3.create_bucket(Bucket="kappa-bench")
        command = [KAPPA, "serve", bundle, "--port", "{port}", "--log-predictions", "s3://kappa-bench/logs"]
        command += ["--log-flush-seconds", "1"]
        with environ(FSSPEC_S3_ENDPOINT_URL=endpoint, **S3_KEYS):
            process, url = start(command, "/predict", BODY, folder, folder / "unused")
        base = base_of(url)
        before: dict[str, float] = {}

        def outage() -> None:
            try:
                text = metrics(base)
                before["written"] = sample(text, "kappa_prediction_log_written_total", 'log="predictions"')
            finally:
                os.killpg(moto.pid, 9)
            before["at"] = time.monotonic()

        try:
            wrk(url, args.connections, args.warmup, folder)
            kill = threading.Timer(args.duration / 2, outage)
            began = time.monotonic()
            kill.start()
            try:
                r = wrk(url, args.connections, args.duration, folder)
            finally:
                kill.cancel()
                kill.join()
            print("s3", r, flush=True)
            ended, waited, dropped = time.monotonic(), 0.0, 0.0
            while True:  # a write to the dead store may still be retrying: give it 30 s to fail
                dropped = sample(metrics(base), "kappa_prediction_log_dropped_total", 'log="predictions"')
                waited = time.monotonic() - ended
                if dropped > 0 or waited > 30:
                    break
                time.sleep(0.5)
            ready, _ = status_of(f"{base}/readyz")
            predict, _ = status_of(url, BODY)
            text = metrics(base)
            counted = sample(text, "kappa_requests_total", 'api="predict"')
            written = sample(text, "kappa_prediction_log_written_total", 'log="predictions"')
            dropped = sample(text, "kappa_prediction_log_dropped_total", 'log="predictions"')
        finally:
            stopped = time.monotonic()
            stop(process)
            stopping = time.monotonic() - stopped

    print(
        f"\nS3 outage: LR, {args.connections} connections, {args.duration:g} s, --log-predictions "
        f"s3://kappa-bench/logs --log-flush-seconds 1, moto killed (SIGKILL) at "
        f"{before.get('at', began) - began:.1f} s"
    )
    print(
        f"{'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'non-2xx':>8} {'socket':>7} "
        f"{'written before':>14} {'dropped':>8}"
    )
    print(
        f"{r['rps']:>9,.0f} {r['p50']:>8.2f} {r['p99']:>8.2f} {int(r['non2xx']):>8} {int(r['socket']):>7} "
        f"{int(before.get('written', 0)):>14,} {int(dropped):>8,}"
    )
    print(
        f"rows written before the outage: {int(before.get('written', 0)):,}; dropped counted "
        f"{waited:.1f} s after the run; then /readyz -> {ready}, POST /predict -> {predict}; "
        f"graceful stop took {stopping:.1f} s"
    )
    print(
        f"rows answered {int(counted):,} = written {int(written):,} + dropped {int(dropped):,} "
        f"+ still queued {int(counted - written - dropped):,} (at the last /metrics look)"
    )
    return [
        verdict(
            r["non2xx"] == 0,
            "s3 outage: zero non-2xx",
            f"{int(r['non2xx'])} non-2xx, {int(r['socket'])} socket errors",
        ),
        verdict(
            dropped > 0,
            "s3 outage: lost rows counted",
            f"kappa_prediction_log_dropped_total {int(dropped):,}",
        ),
        verdict(
            ready == 200 and predict == 200,
            "s3 outage: still serving",
            f"/readyz {ready}, POST /predict {predict}",
        ),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--duration", type=float, default=60, help="seconds per measured run")
    parser.add_argument("--rounds", type=int, default=2, help="off/on rounds of the logging cost")
    parser.add_argument("--warmup", type=float, default=5, help="seconds of load before each run")
    parser.add_argument("--connections", type=int, default=CONNECTIONS)
    parser.add_argument("--only", default="swap,logging,s3", help="which parts to run")
    parser.add_argument("--small", action="store_true", help="--duration 8 --rounds 1 --warmup 2")
    args = parser.parse_args()
    if args.small:
        args.duration, args.rounds, args.warmup = 8, 1, 2
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is missing: apt-get install -y wrk (`make bench` does)")

    verdicts: list[str] = []
    folder = Path(tempfile.mkdtemp(prefix="kappa-operations-bench-"))
    try:
        with environ(KAPPA_HOME=str(folder / "home")):  # the repository, for this process and its servers
            (folder / "online_bench_service.py").write_text(SERVICE)
            (folder / "saver.py").write_text(SAVER)
            sys.path.insert(0, str(folder))
            import online_bench_service

            service = online_bench_service.OnlineBench().pack("model", train("lr"))
            parts = args.only.split(",")
            if "swap" in parts:
                service.save(version="v1")
                verdicts += hot_swap(folder, args)
            bundle = (
                online_bench_service.OnlineBench()
                .pack("model", train("lr"))
                .save_to_dir(str(folder / "lr-bundle"))
            )
            if "logging" in parts:
                verdicts += logging_cost(folder, bundle, args)
            if "s3" in parts:
                verdicts += s3_outage(folder, bundle, args)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    print()
    for line in verdicts:
        print(line)


if __name__ == "__main__":
    main()
