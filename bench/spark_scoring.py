"""Spark scoring, local[2]: Kappa's Arrow UDF and `score()` (what spark_jobs/score.py runs)
next to MLflow's spark_udf (env_manager="local"), a hand-written iterator pandas UDF, a
hand-written mapInArrow and a hand-written Arrow column UDF, and a mapInArrow and a column
UDF that score nothing (Spark's own ceilings for each kind). `kappa_score_raise` is
`score(errors="raise")`: no error columns, like the hand-written functions.

Same Parquet files and models as bench/batch_scoring.py (LR on 2M rows, RF on 1M rows,
16 features). Each contender runs in its own process (MLflow in bench/.venv-peers) and
times one full pass into Spark's noop sink after a warm-up; medians of --repeat runs.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
PEERS = HERE / ".venv-peers" / "bin" / "python"
CONTENDERS = [
    "noop_arrow",
    "hand_arrow",
    "noop_udf",
    "hand_udf",
    "hand_pandas",
    "mlflow",
    "kappa_udf",
    "kappa_score",
    "kappa_score_raise",
]
BASELINES = ("hand_arrow", "hand_udf", "mlflow")  # always run: every ratio is to one of them


def save_mlflow(kind: str, folder: Path) -> str:
    target = folder / "mlflow-model"
    code = (
        "import sys; sys.path.insert(0, sys.argv[1]); from batch_scoring import train; "
        "import mlflow.sklearn; "
        "mlflow.sklearn.save_model(train(sys.argv[2]), sys.argv[3], serialization_format='cloudpickle')"
    )
    subprocess.run([str(PEERS), "-c", code, str(HERE), kind, str(target)], check=True, capture_output=True)
    return str(target)


def run(kind: str, model: str, source: Path) -> float:
    python = str(PEERS) if kind == "mlflow" else sys.executable
    out = subprocess.run(
        [python, str(HERE / "spark_contender.py"), kind, model, str(source)], capture_output=True, text=True
    )
    if out.returncode != 0:
        raise RuntimeError(f"{kind} failed:\n{out.stderr[-3000:]}")
    parts = out.stdout.split()
    return int(parts[parts.index("ROWS") + 1]) / float(parts[parts.index("SECONDS") + 1])


# the targets, judged on rounds: a contender and its hand-written peer run back to back
PAIRED = [
    ("kappa_score", "hand_arrow"),
    ("kappa_udf", "hand_udf"),
    ("kappa_score", "mlflow"),
    ("kappa_udf", "mlflow"),
]


def main() -> None:
    sys.path.insert(0, str(HERE))
    from batch_scoring import make_data, save_bundle, train

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument(
        "--contenders",
        default=",".join(CONTENDERS),
        help=f"comma-separated subset ({', '.join(BASELINES)} always run: the ratios need them)",
    )
    args = parser.parse_args()
    chosen = set(args.contenders.split(",")) | set(BASELINES)
    unknown = chosen - set(CONTENDERS)
    if unknown:
        raise SystemExit(f"unknown contenders {sorted(unknown)}; choose from {CONTENDERS}")
    contenders = [c for c in CONTENDERS if c in chosen]
    if not PEERS.exists():
        raise SystemExit(f"{PEERS} is missing; `make bench` installs the peers")
    lines = []
    with tempfile.TemporaryDirectory(prefix="kappa-spark-bench-") as tmp:
        for kind, rows in (("lr", int(2_000_000 * args.scale)), ("rf", int(1_000_000 * args.scale))):
            source = make_data(rows, f"{kind}_{rows}")
            folder = Path(tmp) / kind
            folder.mkdir()
            bundle, joblib_path = save_bundle(train(kind), folder)
            models = {c: bundle for c in contenders if c.startswith("kappa")}
            models["mlflow"] = save_mlflow(kind, folder)
            rates: dict[str, list[float]] = {c: [] for c in contenders}
            for _ in range(args.repeat):
                for contender in contenders:
                    rates[contender].append(run(contender, models.get(contender, joblib_path), source))
            medians = {c: statistics.median(v) for c, v in rates.items()}
            for contender, base in PAIRED:  # per round: the machine drifts between rounds, not within one
                if contender in rates:
                    paired = [a / b for a, b in zip(rates[contender], rates[base], strict=True)]
                    rounds = ", ".join(f"{r:.2f}" for r in paired)
                    median = statistics.median(paired)
                    print(f"{kind.upper()} {contender} / {base} by round: {rounds}; median {median:.2f}")
            for contender in contenders:
                lines.append(
                    (
                        kind.upper(),
                        rows,
                        contender,
                        medians[contender],
                        medians[contender] / medians["mlflow"],
                        medians[contender] / medians["hand_arrow"],
                        medians[contender] / medians["hand_udf"],
                    )
                )
    print(
        f"{'model':<5} {'rows':>9} {'contender':<17} {'rows/s':>10} {'x mlflow':>9} "
        f"{'x hand arrow':>13} {'x hand udf':>11}"
    )
    for kind, rows, contender, rate, vs_mlflow, vs_arrow, vs_udf in lines:
        print(
            f"{kind:<5} {rows:>9} {contender:<17} {rate:>10,.0f} {vs_mlflow:>9.2f} "
            f"{vs_arrow:>13.2f} {vs_udf:>11.2f}"
        )


if __name__ == "__main__":
    main()
