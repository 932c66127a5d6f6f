"""How long `import <package>` takes in a fresh interpreter: Kappa next to BentoML and MLflow.

Each measurement starts a new Python process and times only the import statement
(perf_counter around it), so interpreter start-up is excluded. Runs are
interleaved across packages so noise on this shared machine hits all of them alike;
the median of N runs is reported.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PEERS = ROOT / "bench" / ".venv-peers" / "bin" / "python"
CODE = (
    "import time, sys; t = time.perf_counter(); import {module}; "
    "print(time.perf_counter() - t, len(sys.modules))"
)


def measure(python: str, module: str) -> tuple[float, int]:
    out = subprocess.run(
        [python, "-c", CODE.format(module=module)], capture_output=True, text=True, check=True, cwd="/"
    )
    seconds, modules = out.stdout.split()
    return float(seconds), int(modules)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=9)
    args = parser.parse_args()
    candidates = [("kappa", sys.executable, "kappa")]
    if PEERS.exists():
        candidates += [("bentoml", str(PEERS), "bentoml"), ("mlflow", str(PEERS), "mlflow")]
    else:
        print(f"(peers not installed: {PEERS} missing; `make bench` installs them)")
    for _, python, module in candidates:  # warm the file cache
        measure(python, module)
    times: dict[str, list[float]] = {name: [] for name, _, _ in candidates}
    modules: dict[str, int] = {}
    for _ in range(args.runs):
        for name, python, module in candidates:
            seconds, count = measure(python, module)
            times[name].append(seconds)
            modules[name] = count
    kappa = statistics.median(times["kappa"])
    print(f"{'package':<10} {'median s':>9} {'min s':>7} {'modules':>8} {'x kappa':>8}")
    for name, values in times.items():
        median = statistics.median(values)
        print(f"{name:<10} {median:>9.3f} {min(values):>7.3f} {modules[name]:>8} {median / kappa:>8.1f}")
    print(f"import kappa: {'OK' if kappa < 0.3 else 'OVER'} the 0.3 s budget (median {kappa:.3f} s)")


if __name__ == "__main__":
    main()
