"""`kappa serve` on a busy machine (issue 20, "shed only when it must"): the server and CPU
burners pinned to the same core, `wrk` and the probes on the other core.

For each model (LogisticRegression, RandomForest of bench/online_serving.py) and each
`--mb-max-latency` (the API's default 300 ms, and 50 ms):

1. **16 connections**, closed loop, for --duration seconds. Target: no non-2xx answer. Its
   req/s is the measured capacity C on the shared core.
2. **4x capacity**: `wrk` with --overload-connections connections, each waiting
   connections / (4 C) seconds between its requests, so 4 C requests/s are offered
   whenever answers come back quickly. Targets: the excess is answered 503 with
   `Retry-After` (no other error, no client time-out); admitted requests keep p99 under
   2 x mb_max_latency; the server's memory stays flat; `/readyz` answers 200 throughout.

Latency of admitted requests is measured by probe clients (own connections, --probe-rate
requests/s in all, spread over 4 threads), timed from send to last byte, so the figure
includes any wait outside the server's own clock (accept queue, socket buffers). wrk counts
statuses; the server's RSS is read from /proc every second; `/readyz` is polled twice a
second with a 2 s time-out.

    .venv/bin/python bench/online_overload.py [--duration 20] [--burners 2] [--models lr,rf]
"""

from __future__ import annotations

import argparse
import http.client
import json
import math
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from online_serving import ROW, SERVICE, start, stop, train, wrk_figures  # noqa: E402

KAPPA = str(Path(sys.executable).parent / "kappa")
BODY = json.dumps([ROW])
SERVER_CPU, CLIENT_CPU = "0", "1"
PAUSE = 0.25  # seconds each overload connection waits between its requests

# wrk: one-row POSTs, each connection pausing DELAY ms between requests; statuses tallied
STATUS_LUA = """
wrk.method = "POST"
wrk.body = BODY
wrk.headers["Content-Type"] = "application/json"
local threads = {}
function setup(thread) table.insert(threads, thread) end
function init(args) counts = {}; retry = 0 end
function delay() return DELAY end
function response(status, headers, body)
  counts[status] = (counts[status] or 0) + 1
  if status == 503 and (headers["Retry-After"] or headers["retry-after"]) then retry = retry + 1 end
end
function done(summary, latency, requests)
  local total, r = {}, 0
  for _, t in ipairs(threads) do
    for s, n in pairs(t:get("counts")) do total[s] = (total[s] or 0) + n end
    r = r + t:get("retry")
  end
  for s, n in pairs(total) do io.write(string.format("status %d %d\\n", s, n)) end
  io.write(string.format("retry-after %d\\n", r))
end
"""


def wrk(url: str, connections: int, seconds: float, delay_ms: float, folder: Path) -> dict[str, float]:
    script = folder / "status.lua"
    script.write_text(STATUS_LUA.replace("BODY", json.dumps(BODY)).replace("DELAY", f"{delay_ms:.3f}"))
    out = subprocess.run(
        ["taskset", "-c", CLIENT_CPU, "wrk", "-t2", f"-c{connections}", f"-d{seconds:.0f}s", "--latency"]
        + ["-s", str(script), url],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    figures = wrk_figures(out)
    statuses = {
        int(s): int(n)
        for s, n in (line.split()[1:] for line in out.splitlines() if line.startswith("status "))
    }
    figures["ok"] = sum(n for s, n in statuses.items() if 200 <= s < 300)
    figures["shed"] = statuses.get(503, 0)
    figures["other"] = sum(n for s, n in statuses.items() if not 200 <= s < 300 and s != 503)
    figures["retry_after"] = next(
        (int(line.split()[1]) for line in out.splitlines() if line.startswith("retry-after ")), 0
    )
    return figures  # with wrk_figures' "timeouts"


class Probes:
    """Timed one-row requests at a fixed total rate, plus /readyz polls, plus the server's RSS."""

    def __init__(self, host: str, port: int, path: str, rate: float, pid: int) -> None:
        self.host, self.port, self.path, self.rate, self.pid = host, port, path, rate, pid
        self.latencies: list[float] = []  # seconds, 2xx answers
        self.statuses: dict[int, int] = {}
        self.failures = 0  # no answer (time-out, reset)
        self.ready_bad = 0
        self.ready_polls = 0
        self.rss: list[int] = []
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()

    def __enter__(self) -> Probes:
        for i in range(4):
            self._threads.append(threading.Thread(target=self._probe, args=(i,), daemon=True))
        self._threads.append(threading.Thread(target=self._ready, daemon=True))
        self._threads.append(threading.Thread(target=self._memory, daemon=True))
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=10)

    def _probe(self, index: int) -> None:
        interval = 4 / self.rate
        next_at = time.monotonic() + index * interval / 4
        connection = None
        while not self._stop.is_set():
            time.sleep(max(0.0, next_at - time.monotonic()))
            next_at += interval
            if connection is None:
                connection = http.client.HTTPConnection(self.host, self.port, timeout=5)
            began = time.perf_counter()
            try:
                connection.request("POST", self.path, BODY, {"Content-Type": "application/json"})
                response = connection.getresponse()
                response.read()
            except OSError:
                with self._lock:
                    self.failures += 1
                connection.close()
                connection = None
                continue
            seconds = time.perf_counter() - began
            with self._lock:
                self.statuses[response.status] = self.statuses.get(response.status, 0) + 1
                if 200 <= response.status < 300:
                    self.latencies.append(seconds)

    def _ready(self) -> None:
        while not self._stop.wait(0.5):
            self.ready_polls += 1
            try:
                connection = http.client.HTTPConnection(self.host, self.port, timeout=2)
                connection.request("GET", "/readyz")
                if connection.getresponse().status != 200:
                    self.ready_bad += 1
                connection.close()
            except OSError:
                self.ready_bad += 1

    def _memory(self) -> None:
        while not self._stop.wait(1.0):
            for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    self.rss.append(int(line.split()[1]) // 1024)

    def percentile(self, q: float) -> float:
        ordered = sorted(self.latencies)
        if not ordered:
            return float("nan")
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


def burners(count: int) -> list[subprocess.Popen[bytes]]:
    return [
        subprocess.Popen(["taskset", "-c", SERVER_CPU, sys.executable, "-c", "while True: pass"])
        for _ in range(count)
    ]


def phase(
    url: str,
    pid: int,
    connections: int,
    seconds: float,
    delay_ms: float,
    args: argparse.Namespace,
    folder: Path,
) -> dict[str, float]:
    port = int(url.split(":")[2].split("/")[0])
    with Probes("127.0.0.1", port, "/predict", args.probe_rate, pid) as probes:
        figures = wrk(url, connections, seconds, delay_ms, folder)
    probe_total = sum(probes.statuses.values()) + probes.failures
    return {
        **figures,
        "probe_n": probe_total,
        "probe_ok": len(probes.latencies),
        "probe_shed": probes.statuses.get(503, 0),
        "probe_fail": probes.failures,
        "probe_p50": probes.percentile(0.50),
        "probe_p99": probes.percentile(0.99),
        "probe_max": max(probes.latencies, default=float("nan")) * 1000,
        "ready_bad": probes.ready_bad,
        "ready_polls": probes.ready_polls,
        "rss_first": probes.rss[0] if probes.rss else 0,
        "rss_max": max(probes.rss, default=0),
        "rss_last": probes.rss[-1] if probes.rss else 0,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--duration", type=float, default=20)
    parser.add_argument("--burners", type=int, default=2, help="busy processes pinned beside the server")
    parser.add_argument("--models", default="lr,rf")
    parser.add_argument("--latencies", default="default,50", help="--mb-max-latency values (ms)")
    parser.add_argument("--overload-connections", type=int, default=0, help="default: enough for 4x")
    parser.add_argument("--probe-rate", type=float, default=40.0, help="timed probe requests per second")
    args = parser.parse_args()
    if os.cpu_count() is None or (os.cpu_count() or 1) < 2:
        raise SystemExit("needs two cores: the server's (shared with the burners) and the clients'")
    rows = []
    with tempfile.TemporaryDirectory(prefix="kappa-overload-") as tmp:
        folder = Path(tmp)
        (folder / "online_bench_service.py").write_text(SERVICE)
        sys.path.insert(0, str(folder))
        import online_bench_service

        for kind in args.models.split(","):
            bundle = (
                online_bench_service.OnlineBench().pack("model", train(kind)).save_to_dir(str(folder / kind))
            )
            for latency in args.latencies.split(","):
                budget = 300.0 if latency == "default" else float(latency)
                command = ["taskset", "-c", SERVER_CPU, KAPPA, "serve", bundle, "--port", "{port}"]
                if latency != "default":
                    command += ["--mb-max-latency", latency]
                process, url = start(command, "/predict", BODY, folder, folder / "unused")
                burning = burners(args.burners)
                try:
                    time.sleep(2)
                    wrk(url, 16, 3, 0, folder)  # warm-up
                    steady = phase(url, process.pid, 16, args.duration, 0, args, folder)
                    capacity = steady["ok"] / args.duration
                    # each connection pauses PAUSE s between requests: 4 C/s offered while answers
                    # take up to the budget (more while the excess is refused at once)
                    connections = args.overload_connections or min(
                        4000, math.ceil(4 * capacity * (PAUSE + budget / 1000))
                    )
                    over = phase(url, process.pid, connections, args.duration, PAUSE * 1000, args, folder)
                    over["connections"] = connections
                    rows.append((kind, budget, "16 conns", steady))
                    answered = (over["ok"] + over["shed"] + over["other"]) / args.duration
                    rows.append((kind, budget, f"{answered / capacity:.1f}x, {connections} c", over))
                    for _, _, label, r in rows[-2:]:
                        print(
                            kind,
                            budget,
                            label,
                            json.dumps({k: round(v, 2) for k, v in r.items()}),
                            flush=True,
                        )
                finally:
                    for burner in burning:
                        burner.kill()
                    stop(process)
    print(
        f"\n{'model':<5} {'budget':>6} {'load':<16} {'2xx/s':>7} {'503':>7} {'R-A':>7} {'other':>5} "
        f"{'t/o':>4} {'probes 503':>10} {'probe p50':>9} {'p99':>7} {'max':>7} {'p99/budget':>10} "
        f"{'readyz bad':>10} "
        f"{'RSS MB first/max/last':>21}"
    )
    for kind, budget, label, r in rows:
        print(
            f"{kind.upper():<5} {budget:>6.0f} {label:<16} {r['ok'] / args.duration:>7,.0f} "
            f"{r['shed']:>7,.0f} "
            f"{r['retry_after']:>7,.0f} {r['other']:>5,.0f} {r['timeouts']:>4,.0f} "
            f"{r['probe_shed']:>4,.0f}/{r['probe_n']:<5,.0f} {r['probe_p50']:>9.1f} "
            f"{r['probe_p99']:>7.1f} {r['probe_max']:>7.1f} {r['probe_p99'] / budget:>10.2f} "
            f"{r['ready_bad']:>4,.0f}/{r['ready_polls']:<5,.0f} "
            f"{r['rss_first']:>7,.0f}/{r['rss_max']:,.0f}/{r['rss_last']:,.0f}"
        )
    print(f"load: {os.getloadavg()[0]:.1f} (1-minute average at the end)")


if __name__ == "__main__":
    main()
