"""The service the batch benchmarks score with, written the way a user would."""

import kappa
from kappa.adapters import DataframeInput
from kappa.frameworks.sklearn import SklearnModelArtifact


@kappa.artifacts([SklearnModelArtifact("model")])
class BenchScorer(kappa.BentoService):
    @kappa.api(input=DataframeInput(), batch=True)
    def predict(self, df):
        return self.artifacts.model.predict(df.to_numpy())


@kappa.artifacts([SklearnModelArtifact("model")])
class BenchNoop(kappa.BentoService):
    """The ceiling: the same input decoding and output writing, and a model that costs nothing."""

    @kappa.api(input=DataframeInput(), batch=True)
    def predict(self, df):
        import numpy as np

        return np.zeros(len(df), dtype="int64")


@kappa.artifacts([SklearnModelArtifact("model")])
class BenchFlaky(kappa.BentoService):
    """BenchScorer whose model raises on a batch holding any "bad" row: one whose f0, scaled
    to an integer, is a multiple of KAPPA_BENCH_BAD_MODULUS (bench/bad_input.py)."""

    @kappa.api(input=DataframeInput(), batch=True)
    def predict(self, df):
        import os

        modulus = int(os.environ.get("KAPPA_BENCH_BAD_MODULUS", "0"))
        if modulus and (bad_rows(df["f0"].to_numpy(), modulus)).any():
            raise ValueError("a bad row in the batch")
        return self.artifacts.model.predict(df.to_numpy())


def bad_rows(f0, modulus):
    import numpy as np

    return (np.abs(f0) * 1e7).astype(np.int64) % modulus == 0
