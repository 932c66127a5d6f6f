"""Dask scoring with 2 worker processes: `kappa_batch.dask.score` next to a hand-written
`map_partitions` that calls the model scattered to the workers (issue 6).

Same Parquet files and models as bench/batch_scoring.py (LR on 2M rows, RF on 1M rows,
16 features). Both contenders run on one LocalCluster (2 processes x 1 thread, loopback),
alternating, after a warm-up pass each (Kappa loads the bundle once per worker there; the
hand-written contender scatters its model before timing). A pass reads the Parquet file
on the workers (a partition per row group of 131,072 rows), scores every row and returns
only partition lengths, so neither pays for moving predictions to the client. Medians of --repeat passes.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
FEATURES = [f"f{i}" for i in range(16)]


def _hand_predict(frame, model):  # type: ignore[no-untyped-def]
    import pandas as pd

    return pd.Series(model.predict(frame[FEATURES].to_numpy()), index=frame.index, name="prediction")


def _timed(ddf) -> tuple[float, int]:  # type: ignore[no-untyped-def]
    start = time.perf_counter()
    rows = int(ddf.map_partitions(len).compute().sum())
    return time.perf_counter() - start, rows


def main() -> None:
    sys.path.insert(0, str(HERE))
    import dask.dataframe as dd
    from batch_scoring import make_data, save_bundle, train
    from distributed import Client, LocalCluster

    from kappa_batch import dask as kdask

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--scale", type=float, default=1.0)
    args = parser.parse_args()
    lines = []
    with (
        tempfile.TemporaryDirectory(prefix="kappa-dask-bench-") as tmp,
        LocalCluster(
            n_workers=2, threads_per_worker=1, host="127.0.0.1", dashboard_address=None, processes=True
        ) as cluster,
        Client(cluster) as client,
    ):
        for kind, rows in (("lr", int(2_000_000 * args.scale)), ("rf", int(1_000_000 * args.scale))):
            source = make_data(rows, f"{kind}_{rows}")
            folder = Path(tmp) / kind
            folder.mkdir()
            model = train(kind)
            bundle, _ = save_bundle(model, folder)
            scattered = client.scatter(model, broadcast=True)

            def hand(ddf, scattered=scattered):  # type: ignore[no-untyped-def]
                return ddf.map_partitions(_hand_predict, scattered, meta=("prediction", "int64"))

            def kappa(ddf, bundle=bundle):  # type: ignore[no-untyped-def]
                return kdask.score(ddf, bundle, "predict")

            contenders = {"hand_map_partitions": hand, "kappa_dask": kappa}
            for build in contenders.values():  # warm-up: load the bundle, learn the output schema
                _timed(build(dd.read_parquet(str(source), split_row_groups=True).partitions[:2]))
            seconds: dict[str, list[float]] = {name: [] for name in contenders}
            for _ in range(args.repeat):
                for name, build in contenders.items():
                    took, counted = _timed(build(dd.read_parquet(str(source), split_row_groups=True)))
                    assert counted == rows, (name, counted, rows)
                    seconds[name].append(took)
            rates = {name: rows / statistics.median(values) for name, values in seconds.items()}
            partitions = dd.read_parquet(str(source), split_row_groups=True).npartitions
            for name in contenders:
                lines.append(
                    (
                        kind.upper(),
                        rows,
                        partitions,
                        name,
                        rates[name],
                        rates[name] / rates["hand_map_partitions"],
                    )
                )
    print(f"{'model':<5} {'rows':>9} {'parts':>5} {'contender':<20} {'rows/s':>10} {'x hand':>7}")
    for kind, rows, partitions, name, rate, ratio in lines:
        print(f"{kind:<5} {rows:>9} {partitions:>5} {name:<20} {rate:>10,.0f} {ratio:>7.2f}")


if __name__ == "__main__":
    main()
