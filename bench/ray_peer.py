"""Ray Data as a peer of `kappa run` (bench/scale.py): run by bench/.venv-peers' Python, where Ray
is installed (never in Kappa's own environment).

    ray_peer.py MODEL.joblib INPUT_FOLDER OUTPUT_FOLDER CONCURRENCY

Reads the Parquet files with ``ray.data.read_parquet``, scores them with ``map_batches`` over a
callable class that loads the model once per actor, in Arrow batches, and writes Parquet.
Prints ``rows N job_seconds S wall_seconds W``: the job from read to written, and the whole
process including ``ray.init``.
"""

from __future__ import annotations

import sys
import time

START = time.perf_counter()


class Predict:
    def __init__(self, model_path: str) -> None:
        import joblib

        self.model = joblib.load(model_path)

    def __call__(self, batch):  # type: ignore[no-untyped-def]
        import numpy as np
        import pyarrow as pa

        features = np.column_stack([column.to_numpy() for column in batch.columns])
        return pa.table({"prediction": self.model.predict(features)})


def main() -> None:
    import ray

    model_path, source, target, concurrency = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    # the actors take one CPU each; one more lets the read and write tasks run beside them (with
    # exactly `concurrency` CPUs the actors hold them all and the reads never start)
    ray.init(num_cpus=concurrency + 1, include_dashboard=False, log_to_driver=False)
    job_start = time.perf_counter()
    dataset = ray.data.read_parquet(source)
    scored = dataset.map_batches(
        Predict,
        fn_constructor_args=(model_path,),
        concurrency=concurrency,
        batch_format="pyarrow",
        batch_size=131_072,
    )
    scored.write_parquet(target)
    now = time.perf_counter()
    rows = ray.data.read_parquet(target).count()  # checked after the clock stops
    print(f"rows {rows} job_seconds {now - job_start:.3f} wall_seconds {now - START:.3f}")


if __name__ == "__main__":
    main()
