"""`make run`, step 1: train an iris classifier and save it as a bundle in the repository.

Step 2 scores the shipped data set offline with the command line:

    kappa run IrisClassifier:latest predict --input-file examples/iris/iris.csv \\
        --id-column id --output-file out/iris_predictions.parquet
"""

from __future__ import annotations

import logging
from pathlib import Path

HERE = Path(__file__).resolve().parent
DATA = HERE / "iris.csv"


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


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    print(train_and_save())


if __name__ == "__main__":
    main()
