"""The example service: an iris classifier, as a data scientist would write it."""

import kappa
from kappa.adapters import DataframeInput
from kappa.frameworks.sklearn import SklearnModelArtifact

FEATURES = ["sepal_length", "sepal_width", "petal_length", "petal_width"]


@kappa.env(infer_pip_packages=True)
@kappa.artifacts([SklearnModelArtifact("model")])
class IrisClassifier(kappa.BentoService):
    """Predicts the iris species (0 setosa, 1 versicolor, 2 virginica) from four measurements."""

    @kappa.api(input=DataframeInput(columns=FEATURES, dtype="float64"), batch=True)
    def predict(self, df):
        return self.artifacts.model.predict(df.to_numpy())
