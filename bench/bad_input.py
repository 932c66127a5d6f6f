"""Bad input at scale (issue 21): `kappa run --workers 2` with the LR bundle over 10,000,000
rows in which a share of rows makes the model raise (0.001%, 0.01%, 0.1%, 1%), beside the
clean run on the same files. Each run must end with exactly those rows in its errors file;
rows/s is reported against the clean run. The runner finds a bad row by splitting a batch
that raised in halves until the row stands alone, so good rows are scored again: this bench
makes that cost visible. BAD_RATES (comma-separated shares, 0 first) picks the rates.
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
        bundle = BenchFlaky().pack("model", train("lr")).save_to_dir(str(Path(tmp) / "bundle"))
        print(f"{'bad rows':>10} {'share':>9} {'rows/s':>12} {'x clean':>8} {'errors file':>12} exact")
        clean = None
        for rate in RATES:
            modulus = round(1 / rate) if rate else 0
            expected = np.flatnonzero(bad_rows(f0, modulus)) if modulus else np.array([], dtype=np.int64)
            target = Path(tmp) / f"out-{modulus}"
            report_file = Path(tmp) / f"r-{modulus}.json"
            subprocess.run(
                [KAPPA, "run", bundle, "predict", "--input-file", str(source), "--output-file", str(target)]
                + [
                    "--workers",
                    str(args.workers),
                    "--max-error-rate",
                    "1",
                    "--report",
                    str(report_file),
                    "-q",
                ],
                check=True,
                env={**os.environ, "KAPPA_BENCH_BAD_MODULUS": str(modulus)},
            )
            report = json.loads(report_file.read_text())
            errors = pq.read_table(target / "_errors.parquet").column("_row")
            found = np.sort(pc.cast(errors, "int64").to_numpy())
            exact = np.array_equal(found, expected) and report["rows_out"] + report["rows_error"] == args.rows
            rate_rows = report["rows_per_second"]
            clean = clean or rate_rows
            print(
                f"{len(expected):>10,} {len(expected) / args.rows:>9.5%} {rate_rows:>12,.0f} "
                f"{rate_rows / clean:>8.2f} {len(found):>12,} {'yes' if exact else 'NO'}"
            )


if __name__ == "__main__":
    main()
