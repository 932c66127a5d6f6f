"""Bad input at scale (issue 21): `kappa run --workers 2` with the LR bundle over 10,000,000
rows in which a share of rows makes the model raise (0.001%, 0.01%, 0.1%, 1%), beside the
clean run on the same files. Each run must end with exactly those rows in its errors file;
rows/s is reported against the clean run, which runs first (after an untimed warm-up run)
and again last (the machine is noisy; the ratio uses their mean).

The runner finds a bad row by scoring parts of the batch that raised (kappa_batch.isolate),
so the model is called again on parts of the batch: this bench makes that cost visible. Beside
each run it scores the first 1,000,000 rows in this process with the same bundle and counts
the model's calls per bad row, those that returned and those that raised.
BAD_RATES (comma-separated shares, 0 first) picks the rates.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
KAPPA = str(Path(sys.executable).parent / "kappa")
RATES = tuple(float(r) for r in os.environ.get("BAD_RATES", "0,0.00001,0.0001,0.001,0.01").split(","))
COUNTED_ROWS = 1_000_000


def main() -> None:
    import numpy as np
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    sys.path.insert(0, str(HERE))
    from batch_scoring import make_data, train
    from bench_service import BenchFlaky, bad_rows

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    source = make_data(args.rows, f"lr_{args.rows}")
    f0 = pq.read_table(source, columns=["f0"]).column("f0").to_numpy()
    with tempfile.TemporaryDirectory(prefix="kappa-bad-") as tmp:
        service = BenchFlaky().pack("model", train("lr"))
        bundle = service.save_to_dir(str(Path(tmp) / "bundle"))

        def run(modulus: int) -> tuple[float, bool, int]:
            """rows/s of `kappa run`, whether its errors are exactly the bad rows, and their count."""
            expected = np.flatnonzero(bad_rows(f0, modulus)) if modulus else np.array([], dtype=np.int64)
            runs = len(list(Path(tmp).glob("out-*")))
            target = Path(tmp) / f"out-{runs}"
            report_file = Path(tmp) / f"r-{runs}.json"
            subprocess.run(
                [KAPPA, "run", bundle, "predict", "--input-file", str(source), "--output-file", str(target)]
                + ["--workers", str(args.workers), "--max-error-rate", "1", "-q"]
                + ["--report", str(report_file)],
                check=True,
                env={**os.environ, "KAPPA_BENCH_BAD_MODULUS": str(modulus)},
            )
            report = json.loads(report_file.read_text())
            errors = pq.read_table(target / "_errors.parquet").column("_row")
            found = np.sort(pc.cast(errors, "int64").to_numpy())
            exact = np.array_equal(found, expected) and report["rows_out"] + report["rows_error"] == args.rows
            return report["rows_per_second"], exact, len(expected)

        run(0)  # a warm-up: the first run of a session reads the input cold and ran at half speed
        first = run(0)[0]
        moduli = [round(1 / rate) for rate in RATES if rate]
        measured = [(*run(modulus), calls(service, source, modulus)) for modulus in moduli]
        last = run(0)[0]
        clean = (first + last) / 2
        print(f"clean runs: {first:,.0f} and {last:,.0f} rows/s")
        print(
            f"{'bad rows':>10} {'share':>9} {'rows/s':>12} {'x clean':>8} {'exact':>6} "
            f"{'calls/bad row (returned + raised)':>34}"
        )
        for speed, exact, count, (returned, raised, found) in measured:
            per_row = f"{(returned + raised) / found:.1f} ({returned / found:.1f} + {raised / found:.1f})"
            print(
                f"{count:>10,} {count / args.rows:>9.5%} {speed:>12,.0f} {speed / clean:>8.2f} "
                f"{'yes' if exact else 'NO':>6} {per_row:>34}"
            )


def calls(service, source: Path, modulus: int) -> tuple[int, int, int]:
    """Calls of the model that returned and that raised while the runner scored the first
    COUNTED_ROWS rows in this process, and the bad rows it found."""
    import pyarrow.parquet as pq

    from kappa_batch.runner import BatchRunner

    runner = BatchRunner(service, "predict")
    counts = {"returned": 0, "raised": 0}
    api = runner.api
    original = api.call_batch

    def counted(value, tasks):
        try:
            result = original(value, tasks)
        except Exception:
            counts["raised"] += 1
            raise
        counts["returned"] += 1
        return result

    api.call_batch = counted
    os.environ["KAPPA_BENCH_BAD_MODULUS"] = str(modulus)
    found = 0
    try:
        table = pq.read_table(source).slice(0, COUNTED_ROWS)
        for batch in table.to_batches(max_chunksize=65_536):
            found += runner.run(batch).errors.num_rows
    finally:
        api.call_batch = original
        os.environ.pop("KAPPA_BENCH_BAD_MODULUS")
    return counts["returned"], counts["raised"], max(found, 1)


if __name__ == "__main__":
    main()
