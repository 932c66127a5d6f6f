"""`kappa serve` of this checkout against an earlier commit's, in one run (paired rounds).

The earlier commit is checked out with `git worktree add DIR COMMIT`; its packages come first
on PYTHONPATH for its server (same venv, same bundle). LR and RF iris bundles, one-row
requests, wrk at --connections for --duration seconds per server per round, the two servers
alternating; prints req/s and p99 per round and the median ratio now/before.

    .venv/bin/python bench/online_before_after.py /tmp/oldtree [--rounds 3] [--duration 15]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from online_operations import wrk  # noqa: E402
from online_serving import ROW, SERVICE, start, stop, train  # noqa: E402

KAPPA_MAIN = [sys.executable, "-m", "kappa", "serve"]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("before", help="a worktree of the earlier commit")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=float, default=15)
    parser.add_argument("--connections", type=int, default=32)
    args = parser.parse_args()
    if not (Path(args.before) / "kappa_online" / "__init__.py").is_file():  # else "before" is this checkout
        parser.error(f"{args.before} is not a checkout of Kappa: make one with `git worktree add DIR COMMIT`")
    folder = Path(tempfile.mkdtemp(prefix="kappa-before-after-"))
    (folder / "online_bench_service.py").write_text(SERVICE)
    sys.path.insert(0, str(folder))
    import online_bench_service

    body = json.dumps([ROW])
    for kind in ("lr", "rf"):
        bundle = online_bench_service.OnlineBench().pack("model", train(kind)).save_to_dir(str(folder / kind))
        results: dict[str, list[dict[str, float]]] = {"before": [], "now": []}
        for _ in range(args.rounds):
            for side in ("before", "now"):
                os.environ["PYTHONPATH"] = os.path.abspath(args.before) if side == "before" else ""
                process, url = start(
                    [*KAPPA_MAIN, bundle, "--port", "{port}"], "/predict", body, folder, folder
                )
                try:
                    wrk(url, args.connections, 3, folder)  # warm-up
                    results[side].append(wrk(url, args.connections, args.duration, folder))
                finally:
                    stop(process)
        os.environ.pop("PYTHONPATH", None)
        ratios = [n["rps"] / b["rps"] for b, n in zip(results["before"], results["now"], strict=True)]
        for side in ("before", "now"):
            rates = ", ".join(f"{r['rps']:,.0f}" for r in results[side])
            p99s = ", ".join(f"{r['p99']:.1f}" for r in results[side])
            errors = sum(r["non2xx"] + r["socket"] for r in results[side])
            print(f"{kind} {side:<6} req/s {rates}  p99 ms {p99s}  errors {errors:.0f}")
        print(f"{kind} now/before req/s by round {', '.join(f'{x:.2f}' for x in ratios)} "
              f"(median {statistics.median(ratios):.2f})")  # fmt: skip


if __name__ == "__main__":
    main()
