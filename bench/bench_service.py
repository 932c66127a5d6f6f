"""The service the batch benchmarks score with, written the way a user would."""

import kappa
from kappa.adapters import DataframeInput
from kappa.frameworks.sklearn import SklearnModelArtifact


@kappa.artifacts([SklearnModelArtifact("model")])
class BenchScorer(kappa.BentoService):
    @kappa.api(input=DataframeInput(), batch=True)
    def predict(self, df):
        return self.artifacts.model.predict(df.to_numpy())
