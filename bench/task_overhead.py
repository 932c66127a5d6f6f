"""The fixed costs of a scoring task, for docs/SCALING.md's cost model (issue 21).

* fetch: a bundle folder downloaded from an S3-compatible server on loopback (moto, in this
  process), as an executor without the bundle fetches it (`kappa.repository.files.download`);
* digest: the bundle's files checked against its manifest (`verify_bundle`), which every
  process does before it unpickles anything;
* load: a fresh Python process that imports kappa and loads the bundle once (`kappa.load`,
  digest check included), as each worker process does once;
* commit: `kappa run`'s commit of an output of N shards (joining the error shards, writing
  the manifest), for N = 100 and 1,000.

Medians of --repeat runs; the LR and RF bundles of bench/scale.py (8 features).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


def median_seconds(step, repeat: int) -> float:  # type: ignore[no-untyped-def]
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def bundle_costs(kind: str, bundle: str, work: Path, repeat: int) -> list[str]:
    """Fetch, digest check and load of one bundle."""
    from kappa.bundle.integrity import verify_bundle
    from kappa.bundle.manifest import load_manifest
    from kappa.repository import files

    label = kind.upper()
    size = sum(p.stat().st_size for p in Path(bundle).rglob("*") if p.is_file())
    url = f"s3://overhead/{kind}"
    files.upload(Path(bundle), url)
    targets = (work / f"{kind}-fetched-{i}" for i in range(repeat))
    fetch = median_seconds(lambda: files.download(url, next(targets)), repeat)
    manifest = load_manifest(Path(bundle))
    digest = median_seconds(lambda: verify_bundle(Path(bundle), manifest.all_files, manifest.digest), repeat)
    code = (
        f"import time; t = time.perf_counter(); import kappa; kappa.load(r'{bundle}'); "
        "print(time.perf_counter() - t)"
    )
    command = [sys.executable, "-c", code]
    loads = [
        float(subprocess.run(command, capture_output=True, text=True, check=True).stdout)
        for _ in range(repeat)
    ]
    return [
        f"{f'{label} bundle fetch ({size / 1024:,.0f} KiB, S3 on loopback)':<48} {fetch:>8.3f}",
        f"{label + ' digest check':<48} {digest:>8.3f}",
        f"{label + ' import kappa + load, a fresh process':<48} {statistics.median(loads):>8.3f}",
    ]


def commit_cost(shards: int, work: Path, repeat: int) -> float:
    import pyarrow as pa

    from kappa_batch.shards import OutputSpec, ShardedOutput

    empty = pa.table({"id": pa.array([], pa.string()), "_status": pa.array([], pa.int32())})
    shard = pa.table({"prediction": pa.array(range(1000), pa.int64())})
    times = []
    for round_ in range(repeat):
        output = ShardedOutput(OutputSpec.parse(str(work / f"out-{shards}-{round_}"), None, None))
        output.prepare({"run": round_}, resume=False, overwrite=False)
        for index in range(shards):
            output.write_shard(index, shard, empty)
        start = time.perf_counter()
        output.commit(shards, {"status": "succeeded"}, True)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    sys.path.insert(0, str(HERE))
    sys.path.insert(0, str(ROOT))
    import os

    import boto3
    from scale import save

    from tests.servers import S3_ENV, RestartableS3

    os.environ.update(S3_ENV)
    lines = [f"{'step':<48} {'seconds':>8}"]
    with tempfile.TemporaryDirectory(prefix="kappa-overhead-") as tmp:
        work = Path(tmp)
        store = RestartableS3()
        store.start()
        os.environ["FSSPEC_S3_ENDPOINT_URL"] = store.endpoint
        boto3.client("s3", endpoint_url=store.endpoint).create_bucket(Bucket="overhead")
        try:
            for kind in ("lr", "rf"):
                bundle, _ = save(kind, work / kind)
                lines += bundle_costs(kind, bundle, work, args.repeat)
        finally:
            store.stop()
        for shards in (100, 1000):
            seconds = commit_cost(shards, work, args.repeat)
            lines.append(f"{f'commit of {shards:,} shards (local disk)':<48} {seconds:>8.3f}")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
