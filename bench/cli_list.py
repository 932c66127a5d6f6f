"""`kappa list` over 1,000 bundles (budget: under 1 s), next to the peers' own list commands.

Setup: a fresh KAPPA_HOME holding one real saved bundle plus 999 more versions
registered through the metadata store with that bundle's manifest (`kappa list`
reads only metadata rows, never bundle files). Each figure is the wall time of a
whole CLI process (interpreter start included), median of N interleaved runs.
Peers, from bench/.venv-peers: `bentoml list` and `mlflow experiments search`
against empty stores of their own in temp folders.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PEERS_BIN = ROOT / "bench" / ".venv-peers" / "bin"
KAPPA = str(Path(sys.executable).parent / "kappa")


def populate(home: Path, count: int) -> None:
    env = {**os.environ, "KAPPA_HOME": str(home)}
    code = f"""
import logging
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression
from examples.iris.service import IrisClassifier
from kappa.repository import open_repository
from kappa.repository.repository import summary
X, y = load_iris(return_X_y=True)
svc = IrisClassifier().pack("model", LogisticRegression(max_iter=500).fit(X, y))
svc.save(labels={{"framework": "sklearn"}})
repo = open_repository()
m = svc.manifest
for i in range({count - 1}):
    v = f"bench-{{i:05d}}"
    labels = {{"framework": "sklearn", "i": str(i % 10)}}
    repo.metadata.add_pending(m.name, v, repo.location(m.name, v), labels)
    repo.metadata.mark_ready(m.name, v, m.digest, summary(m), m.to_dict())
"""
    subprocess.run([sys.executable, "-c", code], check=True, env=env, cwd=ROOT)


def timed(cmd: list[str], env: dict[str, str]) -> tuple[float, str]:
    start = time.perf_counter()
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd="/")
    elapsed = time.perf_counter() - start
    if out.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed: {out.stderr[-500:]}")
    return elapsed, out.stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--bundles", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="kappa-bench-") as tmp:
        home = Path(tmp) / "kappa"
        populate(home, args.bundles)
        base = {**os.environ, "KAPPA_HOME": str(home)}
        cases: list[tuple[str, list[str], dict[str, str]]] = [
            (f"kappa list ({args.bundles} bundles)", [KAPPA, "list"], base),
            ("kappa list --labels i=3", [KAPPA, "list", "--labels", "i=3"], base),
            ("kappa list -o json", [KAPPA, "list", "-o", "json"], base),
            ("kappa get NAME:latest", [KAPPA, "get", "IrisClassifier:latest", "-o", "json"], base),
        ]
        if (PEERS_BIN / "bentoml").exists():
            peer_env = {
                **os.environ,
                "BENTOML_HOME": str(Path(tmp) / "bentoml"),
                "MLFLOW_TRACKING_URI": f"sqlite:///{Path(tmp) / 'mlflow.db'}",
            }
            cases += [
                ("bentoml list (empty store)", [str(PEERS_BIN / "bentoml"), "list"], peer_env),
                ("mlflow experiments search", [str(PEERS_BIN / "mlflow"), "experiments", "search"], peer_env),
            ]
        for _, cmd, env in cases:  # warm up
            timed(cmd, env)
        times: dict[str, list[float]] = {name: [] for name, _, _ in cases}
        lines = 0
        for _ in range(args.runs):
            for name, cmd, env in cases:
                seconds, out = timed(cmd, env)
                times[name].append(seconds)
                if name.startswith("kappa list ("):
                    lines = len(out.splitlines()) - 1
    reference = statistics.median(times[cases[0][0]])
    print(f"{'command':<32} {'median s':>9} {'min s':>7} {'x kappa list':>13}")
    for name, values in times.items():
        median = statistics.median(values)
        print(f"{name:<32} {median:>9.3f} {min(values):>7.3f} {median / reference:>13.2f}")
    verdict = "OK" if reference < 1.0 else "OVER"
    print(f"kappa list printed {lines} bundles: {verdict} the 1 s budget (median {reference:.3f} s)")


if __name__ == "__main__":
    main()
