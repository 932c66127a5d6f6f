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
