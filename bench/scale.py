"""Proof at scale (issue 21): how `kappa run`'s cost grows with the rows, 1 -> 2 workers on every
engine, and Ray Data beside Kappa.

Data (generated once, cached under bench/.data/scale, never committed): 100,000,000 rows x 8
float32 features in 100 Parquet files of 1,000,000 rows, one row group each (~3.2 GB). The
first file is the 1M input, the first ten the 10M input, all of them the 100M input.

1. Linear: `kappa run --workers 2` with LogisticRegression over 1M, 10M and 100M rows: rows/s,
   peak RSS (the largest process of the run), and the output's row count against the input's.
2. 1 -> 2 workers with RandomForest (20 trees, depth 8) on the same 10M rows:
   `kappa run --workers 1|2`; `--engine spark` on a standalone cluster of one 1-core worker vs
   two; `--engine dask` on a LocalCluster of 1 vs 2 worker processes. "cores busy": the
   machine's busy cores on average over the run's wall clock (from /proc/stat): a 1-worker run
   that already keeps most of the cores busy cannot go twice as fast with a second worker.
3. Ray Data (bench/ray_peer.py, in bench/.venv-peers) with `concurrency=2` beside
   `kappa run --workers 2`, on LR and RF, on the same 10M rows and the same fitted models.

Each figure comes from one run (a 100M run takes minutes); rows/s are over the run's own
seconds (Kappa's report; Ray's job from read to written) and over the wall clock of the
process. A progress line is printed at least once a minute while anything runs.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from batch_scoring import peak_rss_mb, save_bundle, train

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
DATA = HERE / ".data" / "scale"
KAPPA = str(Path(sys.executable).parent / "kappa")
PEERS_PYTHON = HERE / ".venv-peers" / "bin" / "python"
FEATURES = [f"f{i}" for i in range(8)]
FILE_ROWS = 1_000_000


def say(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", flush=True)


@contextmanager
def alive(what: str) -> Iterator[None]:
    """A line a minute while ``what`` runs, so a long step is visibly alive."""
    done = threading.Event()
    start = time.monotonic()

    def tick() -> None:
        while not done.wait(60):
            say(f"... {what}: {time.monotonic() - start:.0f} s so far")

    thread = threading.Thread(target=tick, daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()


def make_data(files: int) -> Path:
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    DATA.mkdir(parents=True, exist_ok=True)
    with alive("generating the data"):
        for index in range(files):
            path = DATA / f"part-{index:03d}.parquet"
            if path.exists():
                continue
            rng = np.random.default_rng(index)
            table = pa.table({f: rng.standard_normal(FILE_ROWS, dtype=np.float32) for f in FEATURES})
            partial = path.with_suffix(".partial")
            pq.write_table(table, partial, row_group_size=FILE_ROWS)
            partial.rename(path)
    return DATA


def subset(files: int, folder: Path) -> Path:
    """A folder of links to the first ``files`` files: one input of that many rows."""
    target = folder / f"in-{files}"
    target.mkdir()
    for index in range(files):
        (target / f"part-{index:03d}.parquet").symlink_to(DATA / f"part-{index:03d}.parquet")
    return target


def save(kind: str, folder: Path) -> tuple[str, str]:
    """The bundle and the model file of ``kind`` ("lr" or "rf"), fitted on this data's features."""
    folder.mkdir(parents=True)
    return save_bundle(train(kind, len(FEATURES), "float32"), folder)


def output_rows(folder: Path) -> int:
    import pyarrow.parquet as pq

    return sum(pq.read_metadata(p).num_rows for p in folder.rglob("part-*.parquet"))


def cpu_jiffies() -> tuple[int, int]:
    """The machine's (all, idle) CPU time so far, from /proc/stat (Linux)."""
    with open("/proc/stat") as stat:
        values = [int(v) for v in stat.readline().split()[1:]]
    return sum(values), values[3] + values[4]  # idle + iowait


def kappa_run(bundle: str, source: Path, target: Path, *options: str) -> dict[str, float]:
    """One `kappa run`: its report's seconds, the wall clock, the peak RSS of its largest process,
    and how many of the machine's cores were busy on average over the wall clock (every process
    counts: the engine's daemons too, and anything else running)."""
    import os

    report = target.with_name(target.name + ".json")
    command = [KAPPA, "run", bundle, "predict", "--input-file", str(source), "--output-file", str(target)]
    command += ["--overwrite", "--report", str(report), "--no-progress", *options]
    start, (all_before, idle_before) = time.perf_counter(), cpu_jiffies()
    with alive(f"kappa run {' '.join(options)} on {source.name}"):
        rss_mb = peak_rss_mb(command)  # a fresh process per run: RUSAGE_CHILDREN only grows
    wall, (all_after, idle_after) = time.perf_counter() - start, cpu_jiffies()
    elapsed = max(1, all_after - all_before)
    data = json.loads(report.read_text())
    return {
        "seconds": data["seconds"],
        "wall": wall,
        "rows_in": data["rows_in"],
        "rows_out": output_rows(target),
        "rss_mb": rss_mb,
        "cores_busy": (elapsed - (idle_after - idle_before)) / elapsed * (os.cpu_count() or 1),
    }


def ray_run(model_path: str, source: Path, target: Path, concurrency: int) -> dict[str, float]:
    start = time.perf_counter()
    with alive(f"Ray Data on {source.name}"):
        out = subprocess.run(
            [
                str(PEERS_PYTHON),
                str(HERE / "ray_peer.py"),
                model_path,
                str(source),
                str(target),
                str(concurrency),
            ],
            check=True,
            capture_output=True,
            text=True,
        )
    wall = time.perf_counter() - start
    fields = out.stdout.strip().splitlines()[-1].split()
    values = dict(zip(fields[::2], fields[1::2], strict=False))
    return {"seconds": float(values["job_seconds"]), "wall": wall, "rows_out": int(values["rows"])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--files", type=int, default=100, help="input files of 1M rows for the largest run")
    parser.add_argument("--engines-files", type=int, default=10, help="files for the 1 -> 2 workers runs")
    parser.add_argument("--skip", nargs="*", default=[], choices=["linear", "engines", "ray"])
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    make_data(args.files)
    lines: list[str] = []
    with tempfile.TemporaryDirectory(prefix="kappa-scale-", dir=HERE / ".data") as tmp:
        work = Path(tmp)
        lr_bundle, lr_model = save("lr", work / "lr")
        rf_bundle, rf_model = save("rf", work / "rf")
        small = subset(args.engines_files, work)
        rows_small = args.engines_files * FILE_ROWS

        if "linear" not in args.skip:
            lines.append("1. kappa run --workers 2, LR: rows/s as the rows grow")
            lines.append(
                f"{'rows':>12} {'run rows/s':>12} {'wall rows/s':>12} {'peak RSS MiB':>13} {'rows out':>12}"
            )
            sizes = sorted({1, min(10, args.files), args.files})
            base: dict[str, float] = {}
            for files in sizes:
                source = small if files == args.engines_files else subset(files, work)
                got = kappa_run(lr_bundle, source, work / f"lr-out-{files}", "--workers", "2")
                rows = files * FILE_ROWS
                assert got["rows_in"] == got["rows_out"] == rows, got
                rate = rows / got["seconds"]
                if files == min(10, args.files):
                    base["rate_10"] = rate
                if files == 1:
                    base["rss_1"] = got["rss_mb"]
                lines.append(
                    f"{rows:>12,} {rate:>12,.0f} {rows / got['wall']:>12,.0f} {got['rss_mb']:>13,.0f} "
                    f"{got['rows_out']:>12,}"
                )
                say(lines[-1])
                if files == args.files:
                    lines.append(
                        f"{rows:,} rows: rows/s {rate / base['rate_10']:.2f}x the 10M run's; "
                        f"peak RSS {got['rss_mb'] / base['rss_1']:.2f}x the 1M run's"
                    )

        if "engines" not in args.skip:
            from tests.servers import spark_standalone

            lines.append(f"2. 1 -> 2 workers, RF, {rows_small:,} rows")
            lines.append(
                f"{'engine':<28} {'workers':>7} {'run rows/s':>12} {'wall rows/s':>12} {'x 1 worker':>10}"
                f" {'cores busy':>10}"
            )
            runs: list[tuple[str, list[str], Any]] = [
                ("kappa run (local)", ["--workers", "{n}"], None),
                ("kappa run --engine dask", ["--engine", "dask", "--workers", "{n}"], None),
                ("kappa run --engine spark", ["--engine", "spark", "--master", "{master}"], "spark"),
            ]
            for name, template, cluster in runs:
                first = 0.0
                for n in (1, 2):
                    options = [t.replace("{n}", str(n)) for t in template]
                    if cluster == "spark":
                        with spark_standalone(work / f"spark-{n}", workers=n, cores=1) as master:
                            options = [o.replace("{master}", master) for o in options]
                            got = kappa_run(rf_bundle, small, work / f"rf-{name[-6:]}-{n}", *options)
                    else:
                        got = kappa_run(rf_bundle, small, work / f"rf-{name[-6:]}-{n}", *options)
                    assert got["rows_out"] == rows_small, (name, got)
                    rate = rows_small / got["seconds"]
                    first = first or rate
                    wall = rows_small / got["wall"]
                    lines.append(
                        f"{name:<28} {n:>7} {rate:>12,.0f} {wall:>12,.0f} {rate / first:>10.2f}"
                        f" {got['cores_busy']:>10.2f}"
                    )
                    say(lines[-1])

        if "ray" not in args.skip:
            lines.append(f"3. Ray Data (concurrency=2) beside kappa run --workers 2, {rows_small:,} rows")
            lines.append(
                f"{'model':<5} {'contender':<22} {'run rows/s':>12} {'wall rows/s':>12} {'x ray':>8}"
            )
            for kind, bundle, model in (("LR", lr_bundle, lr_model), ("RF", rf_bundle, rf_model)):
                ours = kappa_run(bundle, small, work / f"{kind}-kappa", "--workers", "2")
                theirs = ray_run(model, small, work / f"{kind}-ray", 2)
                assert ours["rows_out"] == theirs["rows_out"] == rows_small, (ours, theirs)
                for contender, got in (("ray data", theirs), ("kappa run --workers 2", ours)):
                    ratio = theirs["seconds"] / got["seconds"]
                    lines.append(
                        f"{kind:<5} {contender:<22} {rows_small / got['seconds']:>12,.0f} "
                        f"{rows_small / got['wall']:>12,.0f} {ratio:>8.2f}"
                    )
                    say(lines[-1])
                lines.append(f"{kind}: wall clock, kappa x ray: {theirs['wall'] / ours['wall']:.2f}")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
