"""`kappa run` next to the hand-written pyarrow loop, on the same Parquet files and models.

* LogisticRegression on 10,000,000 rows x 16 features, RandomForest (20 trees, depth 8)
  on 4,000,000 rows; Kappa with 1 and 2 workers vs the bare loop (bench/bare_loop.py).
  (Until issue 22 these were 2M and 1M rows: runs of under a second, in which forked
  workers spent much of their time faulting in their first pages, bench/RESULTS.md.)
* The ceiling (issue 22): the same files scored by a no-op bundle (same decoding and
  writing, a model that returns zeros) on 1 and 2 workers; each contender's rows/s is
  printed as a share of the ceiling with as many workers, and 2 workers against 1.
  "kappa 2 workers x2 threads" is the old default (each worker's BLAS/OpenMP pools as wide
  as the machine), for comparison.
* Peak memory (max RSS) of `kappa run` on 1M and 10M rows (LR): streaming means the
  10x larger input should need less than 20% more memory.

Every figure comes from a separate process. "loop" rows/s counts only the scoring
loop (Kappa's report `seconds`, the bare loop's own timer); "wall" includes
interpreter start-up and model load. Runs alternate between contenders and the
median of --repeat runs is reported, since this machine is shared and noisy.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
DATA = HERE / ".data"
KAPPA = str(Path(sys.executable).parent / "kappa")
FEATURES = [f"f{i}" for i in range(16)]


def make_data(rows: int, name: str) -> Path:
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = DATA / f"{name}.parquet"
    if path.exists():
        return path
    DATA.mkdir(exist_ok=True)
    rng = np.random.default_rng(42)
    partial = path.with_suffix(".partial")
    writer = None
    chunk = 1_000_000
    for start in range(0, rows, chunk):
        n = min(chunk, rows - start)
        table = pa.table({f: rng.normal(size=n) for f in FEATURES})
        if writer is None:
            writer = pq.ParquetWriter(partial, table.schema)
        writer.write_table(table, row_group_size=131072)
    assert writer is not None
    writer.close()
    partial.rename(path)
    return path


def train(kind: str, features: int = len(FEATURES), dtype: str = "float64") -> object:
    """LogisticRegression ("lr") or RandomForest on 50,000 rows of ``features`` columns."""
    import numpy as np
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(0)
    X = rng.normal(size=(50_000, features)).astype(dtype)
    y = (X[:, 0] + 0.5 * X[:, 1] - X[:, 2] * X[:, 3] > 0).astype(int)
    if kind == "lr":
        return LogisticRegression(max_iter=500).fit(X, y)
    return RandomForestClassifier(n_estimators=20, max_depth=8, random_state=0).fit(X, y)


def save_bundle(model: object, folder: Path) -> tuple[str, str]:
    """The scoring bundle and the model file (for the bare loop)."""
    import joblib

    sys.path.insert(0, str(HERE))
    from bench_service import BenchScorer

    bundle = BenchScorer().pack("model", model).save_to_dir(str(folder / "bundle"))
    model_path = folder / "model.joblib"
    joblib.dump(model, model_path)
    return bundle, str(model_path)


def save_noop(model: object, folder: Path) -> str:
    """The no-op bundle of the ceiling: the same layout, an API that returns zeros."""
    sys.path.insert(0, str(HERE))
    from bench_service import BenchNoop

    return str(BenchNoop().pack("model", model).save_to_dir(str(folder / "noop")))


def run_kappa(
    bundle: str, source: Path, target: Path, workers: int, threads: int | None = None
) -> tuple[float, float]:
    report = target.with_suffix(".json")
    start = time.perf_counter()
    subprocess.run(
        [
            KAPPA,
            "run",
            bundle,
            "predict",
            "--input-file",
            str(source),
            "--output-file",
            str(target),
            "--workers",
            str(workers),
            "--overwrite",
            "--report",
            str(report),
            "-q",
            *(["--threads-per-worker", str(threads)] if threads else []),
        ],
        check=True,
    )
    wall = time.perf_counter() - start
    return json.loads(report.read_text())["seconds"], wall


def run_bare(model_path: str, source: Path, target: Path) -> tuple[float, float]:
    start = time.perf_counter()
    out = subprocess.run(
        [sys.executable, str(HERE / "bare_loop.py"), model_path, str(source), str(target)],
        check=True,
        capture_output=True,
        text=True,
    )
    wall = time.perf_counter() - start
    return float(out.stdout.split()[1]), wall


def peak_rss_mb(cmd: list[str]) -> float:
    wrapper = (
        "import resource, subprocess, sys; subprocess.run(sys.argv[1:], check=True); "
        "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)"
    )
    out = subprocess.run([sys.executable, "-c", wrapper, *cmd], check=True, capture_output=True, text=True)
    return int(out.stdout.split()[-1]) / 1024


def _ratio(value: float | None) -> str:
    return "" if value is None else f"{value:.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--scale", type=float, default=1.0, help="shrink the data sets for a quick look")
    parser.add_argument("--skip-memory", action="store_true")
    args = parser.parse_args()
    lr_rows, rf_rows = int(10_000_000 * args.scale), int(4_000_000 * args.scale)
    with tempfile.TemporaryDirectory(prefix="kappa-bench-") as tmp:
        work = Path(tmp)
        rows_out = []
        for kind, rows in (("lr", lr_rows), ("rf", rf_rows)):
            source = make_data(rows, f"{kind}_{rows}")
            folder = work / kind
            folder.mkdir()
            model = train(kind)
            bundle, model_path = save_bundle(model, folder)
            noop = save_noop(model, folder)
            contenders: dict[str, Callable[[], tuple[float, float]]] = {
                "bare loop": partial(run_bare, model_path, source, folder / "bare.parquet"),
                "kappa 1 worker": partial(run_kappa, bundle, source, folder / "k1", 1),
                "kappa 2 workers": partial(run_kappa, bundle, source, folder / "k2", 2),
                "kappa 2 workers x2 threads": partial(run_kappa, bundle, source, folder / "k2t", 2, 2),
                "noop 1 worker": partial(run_kappa, noop, source, folder / "n1", 1),
                "noop 2 workers": partial(run_kappa, noop, source, folder / "n2", 2),
            }
            results: dict[str, list[tuple[float, float]]] = {name: [] for name in contenders}
            for _ in range(args.repeat):  # rounds alternate contenders: the machine's noise hits all
                for name, run in contenders.items():
                    results[name].append(run())
            loop_rate = {
                name: rows / statistics.median(v[0] for v in values) for name, values in results.items()
            }
            wall_rate = {
                name: rows / statistics.median(v[1] for v in values) for name, values in results.items()
            }
            for name in results:
                ceiling = loop_rate["noop 2 workers" if "2 workers" in name else "noop 1 worker"]
                one = {"kappa 2 workers": "kappa 1 worker", "kappa 2 workers x2 threads": "kappa 1 worker"}
                one["noop 2 workers"] = "noop 1 worker"
                rows_out.append(
                    (
                        kind.upper(),
                        rows,
                        name,
                        loop_rate[name],
                        loop_rate[name] / loop_rate["bare loop"],
                        wall_rate[name],
                        wall_rate[name] / wall_rate["bare loop"],
                        loop_rate[name] / ceiling if name != "bare loop" else None,
                        loop_rate[name] / loop_rate[one[name]] if name in one else None,
                    )
                )
        print(
            f"{'model':<5} {'rows':>9} {'contender':<27} {'loop rows/s':>12} {'x bare':>7} "
            f"{'wall rows/s':>12} {'x bare':>7} {'x ceiling':>9} {'x 1 worker':>10}"
        )
        for kind, rows, name, loop, loop_x, wall, wall_x, ceiling_x, speedup in rows_out:
            print(
                f"{kind:<5} {rows:>9} {name:<27} {loop:>12,.0f} {loop_x:>7.2f} {wall:>12,.0f} {wall_x:>7.2f} "
                f"{_ratio(ceiling_x):>9} {_ratio(speedup):>10}"
            )
        if args.skip_memory:
            return
        small, large = int(1_000_000 * args.scale), int(10_000_000 * args.scale)
        bundle = str(work / "lr" / "bundle")
        peaks = []
        for rows in (small, large):
            source = make_data(rows, f"mem_{rows}")
            cmd = [
                KAPPA,
                "run",
                bundle,
                "predict",
                "--input-file",
                str(source),
                "--output-file",
                str(work / f"mem{rows}"),
                "--overwrite",
                "-q",
            ]
            peaks.append(statistics.median(peak_rss_mb(cmd) for _ in range(max(1, args.repeat - 1))))
        print(
            f"peak RSS kappa run (LR): {small:,} rows {peaks[0]:.0f} MiB, {large:,} rows {peaks[1]:.0f} MiB, "
            f"growth {peaks[1] / peaks[0] - 1:+.1%} for {large // small}x the rows"
        )


if __name__ == "__main__":
    main()
