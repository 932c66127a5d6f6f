"""What ``BatchRunner.run`` costs per clean batch: the path every engine and the online
server take. Scores LR on batches of 1, 64 and 65,536 rows (16 float64 features) and prints
the best of five rounds in µs per batch. Run it from two checkouts to compare code versions:

    PYTHONPATH=/path/to/other/checkout .venv/bin/python bench/runner_overhead.py
"""

import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa

sys.path.insert(0, str(Path(__file__).parent))

from batch_scoring import save_bundle, train  # noqa: E402

from kappa_batch.runner import BatchRunner  # noqa: E402

SIZES = {1: 2_000, 64: 2_000, 65_536: 100}  # rows per batch: batches per round


def main() -> None:
    bundle, _ = save_bundle(train("lr"), Path(tempfile.mkdtemp(prefix="kappa-runner-bench-")))
    runner = BatchRunner(bundle, "predict")
    rng = np.random.default_rng(0)
    print(f"kappa_batch.runner from {Path(sys.modules[BatchRunner.__module__].__file__).parent.parent}")
    for size, repeat in SIZES.items():
        batch = pa.RecordBatch.from_arrays(
            [pa.array(rng.normal(size=size)) for _ in range(16)], names=[f"f{i}" for i in range(16)]
        )
        best = float("inf")
        for _ in range(5):
            start = time.perf_counter()
            for _ in range(repeat):
                runner.run(batch)
            best = min(best, (time.perf_counter() - start) / repeat)
        print(f"{size:>7,} rows: {best * 1e6:10.1f} µs per batch", flush=True)


if __name__ == "__main__":
    main()
