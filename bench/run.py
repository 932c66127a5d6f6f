"""`make bench`: every benchmark in bench/, one after the other, each printing its table."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
BENCHMARKS = [
    "import_time.py",
    "cli_list.py",
    "batch_scoring.py",
    "spark_scoring.py",
    "dask_scoring.py",
    "online_serving.py",
    "online_operations.py",
    "gamma_registry.py",
]


def main() -> int:
    failed = 0
    for name in BENCHMARKS:
        print(f"== {name}", flush=True)
        failed += subprocess.run([sys.executable, str(HERE / name)]).returncode != 0
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
