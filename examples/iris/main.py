"""`make run`: train an iris classifier, save it as a bundle, score a data set offline."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

HERE = Path(__file__).resolve().parent
DATA = HERE / "iris.csv"

log = logging.getLogger("examples.iris")


def train_and_save() -> str:
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    from examples.iris.service import FEATURES, IrisClassifier

    X, y = load_iris(return_X_y=True)
    model = LogisticRegression(max_iter=1000).fit(X, y)
    service = IrisClassifier()
    service.pack("model", model, metadata={"features": FEATURES, "train_accuracy": float(model.score(X, y))})
    service.save(labels={"framework": "sklearn", "example": "iris"})
    return f"{service.name}:{service.version}"


def score(ref: str, output: Path) -> Path:
    """Score DATA batch by batch over Arrow with the saved bundle; write Parquet."""
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    import kappa

    service = kappa.load(ref)
    api = service.get_inference_api("predict")
    reader = pacsv.open_csv(DATA, read_options=pacsv.ReadOptions(block_size=1 << 20))
    output.parent.mkdir(parents=True, exist_ok=True)
    rows = 0
    writer = None
    try:
        for batch in reader:
            outcome = api.infer(batch)
            scored = outcome.outputs.append_column("id", batch.column("id"))
            if writer is None:
                writer = pq.ParquetWriter(output, scored.schema)
            writer.write_batch(scored)
            rows += batch.num_rows
    finally:
        if writer is not None:
            writer.close()
    log.info("scored %d rows with %s; predictions written to %s", rows, ref, output)
    return output


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--output", type=Path, default=Path("out/iris_predictions.parquet"))
    args = parser.parse_args()
    ref = train_and_save()
    out = score(ref, args.output)
    print(f"predictions: {out.resolve()}")


if __name__ == "__main__":
    main()
