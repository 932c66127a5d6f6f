"""Online serving under `wrk` on 127.0.0.1 (issue 8): one-row requests at 1, 8, 32 and 128
connections against `kappa serve` (micro-batching on), BentoML 1.x (batchable API, its
adaptive batching on), `mlflow models serve`, and a plain Starlette endpoint that calls
`predict` per request. One worker process each; a LogisticRegression and a RandomForest
(100 trees) trained on iris. Every server is started fresh, warmed up for --warmup
seconds, then measured for --duration seconds per connection count. Peers run from
bench/.venv-peers. Prints req/s, p50 and p99 latency and errors, and ratios to BentoML and
to the plain endpoint.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
PEERS = HERE / ".venv-peers" / "bin"
ROW = [5.9, 3.0, 5.1, 1.8]
CONNECTIONS = "1,8,32,128,256"

PLAIN = """
import json, os, joblib, numpy as np
from starlette.applications import Starlette
from starlette.responses import Response
from starlette.routing import Route

model = joblib.load(os.environ["MODEL"])

async def predict(request):
    rows = np.asarray(json.loads(await request.body()), dtype=float)
    return Response(json.dumps(model.predict(rows).tolist()), media_type="application/json")

app = Starlette(routes=[Route("/predict", predict, methods=["POST"])])
"""

BENTO = """
import os, joblib, numpy as np, bentoml

@bentoml.service(workers=1)
class Iris:
    def __init__(self):
        self.model = joblib.load(os.environ["MODEL"])

    @bentoml.api(batchable=True, max_batch_size=1000, max_latency_ms=300)
    def predict(self, input: np.ndarray) -> np.ndarray:
        return self.model.predict(input)
"""

SERVICE = """
import kappa
from kappa.adapters import DataframeInput
from kappa.frameworks.sklearn import SklearnModelArtifact

@kappa.artifacts([SklearnModelArtifact("model")])
class OnlineBench(kappa.BentoService):
    @kappa.api(input=DataframeInput(), batch=True)
    def predict(self, df):
        return self.artifacts.model.predict(df.to_numpy())
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def train(kind: str) -> object:
    from sklearn.datasets import load_iris
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.linear_model import LogisticRegression

    X, y = load_iris(return_X_y=True)
    if kind == "lr":
        return LogisticRegression(max_iter=1000).fit(X, y)
    return RandomForestClassifier(n_estimators=100, random_state=0).fit(X, y)


def servers(
    folder: Path, model_file: Path, bundle: str, mlflow_model: str
) -> dict[str, tuple[list[str], str, str]]:
    """name -> (command, path, body); each listens on {port}."""
    (folder / "plain_app.py").write_text(PLAIN)
    (folder / "bento_service.py").write_text(BENTO)
    one_row = json.dumps([ROW])
    return {
        "kappa": (
            [str(Path(sys.executable).parent / "kappa"), "serve", bundle, "--port", "{port}"],
            "/predict",
            one_row,
        ),
        "kappa2": (  # two worker processes on the same port
            [
                str(Path(sys.executable).parent / "kappa"),
                "serve",
                bundle,
                "--port",
                "{port}",
                "--workers",
                "2",
            ],
            "/predict",
            one_row,
        ),
        "bentoml": (
            [
                str(PEERS / "bentoml"),
                "serve",
                "bento_service:Iris",
                "--port",
                "{port}",
                "--host",
                "127.0.0.1",
            ],
            "/predict",
            json.dumps({"input": [ROW]}),
        ),
        "mlflow": (
            [
                str(PEERS / "mlflow"),
                "models",
                "serve",
                "-m",
                mlflow_model,
                "-p",
                "{port}",
                "-h",
                "127.0.0.1",
                "--env-manager",
                "local",
                "-w",
                "1",
            ],
            "/invocations",
            json.dumps({"inputs": [ROW]}),
        ),
        "plain": (
            [sys.executable, "-m", "uvicorn", "plain_app:app", "--port", "{port}", "--log-level", "warning"],
            "/predict",
            one_row,
        ),
    }


def start(
    command: list[str], path: str, body: str, folder: Path, model_file: Path
) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    env = {
        **os.environ,
        "MODEL": str(model_file),
        "PATH": f"{PEERS}:{os.environ['PATH']}",
        "BENTOML_HOME": str(folder / "bentoml"),
    }
    process = subprocess.Popen(
        [part.format(port=port) for part in command],
        cwd=folder,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=(folder / f"{port}.log").open("wb"),
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}{path}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{command[0]} exited: {(folder / f'{port}.log').read_text()[-2000:]}")
        try:
            request = urllib.request.Request(url, body.encode(), {"Content-Type": "application/json"})
            with urllib.request.urlopen(request, timeout=5) as response:
                if response.status == 200:
                    return process, url
        except OSError:
            time.sleep(0.5)
    raise RuntimeError(f"{command} did not answer within 120 s")


def stop(process: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(process.pid, 15)
        process.wait(timeout=30)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        os.killpg(process.pid, 9)


def wrk(url: str, body: str, connections: int, seconds: int, folder: Path) -> dict[str, float]:
    script = folder / "post.lua"
    script.write_text(
        'wrk.method = "POST"\n'
        f"wrk.body = {json.dumps(body)}\n"
        'wrk.headers["Content-Type"] = "application/json"\n'
    )
    threads = min(2, connections)
    out = subprocess.run(
        ["wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", str(script), url],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    figures = wrk_figures(out)
    errors = figures["non2xx"] + figures["socket"]
    return {
        "rps": figures["rps"],
        "p50": figures["p50"],
        "p99": figures["p99"],
        "errors": errors,
        "non2xx": figures["non2xx"],
        "timeouts": figures["timeouts"],
    }


def wrk_figures(out: str) -> dict[str, float]:
    """req/s, requests, p50 and p99 (ms), non-2xx answers and socket errors from `wrk --latency`."""

    def number(pattern: str) -> float:
        match = re.search(pattern, out)
        return float(match.group(1)) if match else 0.0

    def percentile(p: str) -> float:
        match = re.search(rf"\s{p}%\s+([\d.]+)(us|ms|s)\b", out)
        if match is None:
            return float("nan")
        value, unit = float(match.group(1)), match.group(2)
        return value / 1000 if unit == "us" else value * 1000 if unit == "s" else value

    socket_errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    return {
        "rps": number(r"Requests/sec:\s+([\d.]+)"),
        "requests": number(r"(\d+) requests in"),
        "p50": percentile("50"),
        "p99": percentile("99"),
        "non2xx": number(r"Non-2xx or 3xx responses:\s+(\d+)"),
        "socket": float(sum(int(g) for g in socket_errors.groups())) if socket_errors else 0.0,
        "timeouts": float(socket_errors.group(4)) if socket_errors else 0.0,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--duration", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--contenders", default="kappa,kappa2,bentoml,mlflow,plain")
    parser.add_argument("--connections", default=CONNECTIONS, help="comma-separated connection counts")
    parser.add_argument("--models", default="lr,rf")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is missing: apt-get install -y wrk (`make bench` does)")
    import joblib

    results: dict[tuple[str, str, int], dict[str, float]] = {}
    with tempfile.TemporaryDirectory(prefix="kappa-online-bench-") as tmp:
        folder = Path(tmp)
        (folder / "online_bench_service.py").write_text(SERVICE)
        sys.path.insert(0, str(folder))
        import online_bench_service

        for kind in args.models.split(","):
            model = train(kind)
            model_file = folder / f"{kind}.joblib"
            joblib.dump(model, model_file)
            bundle = (
                online_bench_service.OnlineBench()
                .pack("model", model)
                .save_to_dir(str(folder / f"{kind}-bundle"))
            )
            mlflow_model = str(folder / f"{kind}-mlflow")
            code = (
                "import sys, joblib, mlflow.sklearn; "
                "mlflow.sklearn.save_model(joblib.load(sys.argv[1]), sys.argv[2], "
                "serialization_format='cloudpickle')"
            )
            subprocess.run(
                [str(PEERS / "python"), "-c", code, str(model_file), mlflow_model],
                check=True,
                capture_output=True,
            )
            for name, (command, path, body) in servers(folder, model_file, bundle, mlflow_model).items():
                if name not in args.contenders.split(","):
                    continue
                process, url = start(command, path, body, folder, model_file)
                try:
                    wrk(url, body, 32, args.warmup, folder)
                    for connections in (int(c) for c in args.connections.split(",")):
                        results[(kind, name, connections)] = wrk(
                            url, body, connections, args.duration, folder
                        )
                        print(kind, name, connections, results[(kind, name, connections)], flush=True)
                finally:
                    stop(process)
    print(
        f"{'model':<5} {'conns':>5} {'server':<8} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} "
        f"{'errors':>6} {'503':>6} {'t/o':>5} {'x bentoml':>9} {'x plain':>8} {'x kappa':>8}"
    )
    for (kind, name, connections), r in sorted(
        results.items(), key=lambda item: (item[0][0], item[0][2], item[0][1])
    ):
        bento = results.get((kind, "bentoml", connections), {}).get("rps")
        plain = results.get((kind, "plain", connections), {}).get("rps")
        vs_bento = f"{r['rps'] / bento:9.2f}" if bento else f"{'-':>9}"
        vs_plain = f"{r['rps'] / plain:8.2f}" if plain else f"{'-':>8}"
        one = results.get((kind, "kappa", connections), {}).get("rps")
        vs_kappa = f"{r['rps'] / one:8.2f}" if one else f"{'-':>8}"
        print(
            f"{kind.upper():<5} {connections:>5} {name:<8} {r['rps']:>9,.0f} {r['p50']:>8.2f} "
            f"{r['p99']:>8.2f} {int(r['errors']):>6} {int(r['non2xx']):>6} {int(r['timeouts']):>5} "
            f"{vs_bento} {vs_plain} {vs_kappa}"
        )


if __name__ == "__main__":
    main()
