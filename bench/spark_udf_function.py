"""Kappa's Spark column-UDF function against the hand-written Arrow UDF's, outside Spark.

Both generators get the same eight 65,536-row batches of 16 float64 Arrow columns (what
Spark hands an Arrow column UDF) and score them with the same model; prints the best of
three rounds in ms per batch. Separates the scoring code's cost from Spark's own.

    .venv/bin/python bench/spark_udf_function.py lr|rf
"""

import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa

sys.path.insert(0, str(Path(__file__).parent))

from batch_scoring import save_bundle, train  # noqa: E402

from kappa.bundle.manifest import load_manifest  # noqa: E402
from kappa_batch.remote import BundleHandle  # noqa: E402
from kappa_batch.runners import spark as kspark  # noqa: E402

ROWS, BATCHES = 65_536, 8
FEATURES = [f"f{i}" for i in range(16)]


def main(kind: str) -> None:
    model = train(kind)
    bundle, _ = save_bundle(model, Path(tempfile.mkdtemp(prefix="kappa-udf-bench-")))
    manifest = load_manifest(Path(bundle))
    handle = BundleHandle(manifest.digest, manifest.tag, url=bundle)
    rng = np.random.default_rng(1)
    batches = [tuple(pa.array(rng.normal(size=ROWS)) for _ in FEATURES) for _ in range(BATCHES)]

    def hand(columns_batches):  # type: ignore[no-untyped-def]  # bench/spark_contender.py's hand_udf
        for columns in columns_batches:
            features = np.column_stack([c.to_numpy() for c in columns])
            yield pa.array(model.predict(features).astype(np.int64))

    contenders = {
        "hand_udf": hand,
        "kappa_udf": kspark._udf_function(handle, "predict", pa.int64(), "raise", "warn", FEATURES),
    }
    list(contenders["kappa_udf"](iter(batches[:1])))  # load the bundle once, as a warm worker has
    best = {name: float("inf") for name in contenders}
    for _ in range(3):
        for name, function in contenders.items():
            start = time.perf_counter()
            for _ in function(iter(batches)):
                pass
            best[name] = min(best[name], time.perf_counter() - start)
    for name, seconds in best.items():
        print(f"{kind} {name:<10} {seconds * 1000 / BATCHES:8.2f} ms per {ROWS:,}-row batch")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "lr")
