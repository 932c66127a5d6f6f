"""Kappa's Spark functions against the hand-written ones, outside Spark.

Every generator gets the same eight 65,536-row batches of 16 float64 Arrow columns (what
Spark hands an Arrow column UDF, or a ``mapInArrow`` function as one record batch) and
scores them with the same model; prints the best of three rounds in ms per batch.
Separates the scoring code's cost from Spark's own:

* ``hand_udf`` / ``kappa_udf``: bench/spark_contender.py's hand-written Arrow column UDF and
  ``kappa_batch.spark.udf``'s function;
* ``hand_arrow`` / ``kappa_score``: the hand-written ``mapInArrow`` function and
  ``kappa_batch.spark.score``'s (with its ``_status``/``_message`` columns).

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
from kappa_batch import spark as kspark  # noqa: E402
from kappa_batch.frames import FramePlan  # noqa: E402
from kappa_batch.shipping import BundleHandle  # noqa: E402

ROWS, BATCHES = 65_536, 8
FEATURES = [f"f{i}" for i in range(16)]


def main(kind: str) -> None:
    model = train(kind)
    bundle, _ = save_bundle(model, Path(tempfile.mkdtemp(prefix="kappa-udf-bench-")))
    manifest = load_manifest(Path(bundle))
    handle = BundleHandle(manifest.digest, manifest.tag, url=bundle)
    rng = np.random.default_rng(1)
    column_batches = [tuple(pa.array(rng.normal(size=ROWS)) for _ in FEATURES) for _ in range(BATCHES)]
    record_batches = [pa.RecordBatch.from_arrays(list(c), names=FEATURES) for c in column_batches]

    def hand_udf(batches):  # type: ignore[no-untyped-def]  # bench/spark_contender.py's hand_udf
        for columns in batches:
            features = np.column_stack([c.to_numpy() for c in columns])
            yield pa.array(model.predict(features).astype(np.int64))

    def hand_arrow(batches):  # type: ignore[no-untyped-def]  # bench/spark_contender.py's hand_arrow
        for batch in batches:
            features = np.column_stack([batch.column(f).to_numpy() for f in FEATURES])
            values = model.predict(features).astype(np.int64)
            yield pa.RecordBatch.from_arrays([pa.array(values)], names=["prediction"])

    outputs = pa.schema([("prediction", pa.int64())])
    schema = pa.schema([*outputs, ("_status", pa.int32()), ("_message", pa.string())])
    plan = FramePlan(handle, "predict", None, "column", "warn", outputs, schema)
    contenders = {
        "hand_udf": (hand_udf, column_batches),
        "kappa_udf": (
            kspark._udf_function(handle, "predict", pa.int64(), "raise", "warn", FEATURES),
            column_batches,
        ),
        "hand_arrow": (hand_arrow, record_batches),
        "kappa_score": (
            kspark._score_function(plan),
            record_batches,
        ),
    }
    list(contenders["kappa_udf"][0](iter(column_batches[:1])))  # load the bundle once, as a warm worker has
    best = {name: float("inf") for name in contenders}
    for _ in range(3):
        for name, (function, batches) in contenders.items():
            start = time.perf_counter()
            for _ in function(iter(batches)):
                pass
            best[name] = min(best[name], time.perf_counter() - start)
    for name, seconds in best.items():
        print(f"{kind} {name:<11} {seconds * 1000 / BATCHES:8.2f} ms per {ROWS:,}-row batch")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "lr")
