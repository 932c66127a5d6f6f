"""Service definition, packing and in-process API calls."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import kappa
from kappa.adapters import DataframeInput, JsonInput
from kappa.errors import ArtifactError, InferenceError, InputError
from kappa.frameworks.pickle import PickleArtifact

MULTI = """
import kappa
from kappa.adapters import DataframeInput, JsonInput
from kappa.frameworks.pickle import PickleArtifact
from kappa.frameworks.sklearn import SklearnModelArtifact

@kappa.artifacts([SklearnModelArtifact("model"), PickleArtifact("scaler")])
class Multi(kappa.BentoService):
    @kappa.api(input=DataframeInput(), batch=True)
    def predict(self, df):
        return self.artifacts.model.predict(df * self.artifacts.scaler)

    @kappa.api(input=JsonInput(), batch=True, api_name="classify")
    def by_json(self, items, tasks):
        kept = []
        for item, task in zip(items, tasks):
            if "x" not in item:
                task.discard(http_status=400, err_msg="needs x")
            else:
                kept.append(item["x"])
        return [int(v) for v in self.artifacts.model.predict(kept)] if kept else []

    @kappa.api(input=JsonInput(), batch=False)
    def single(self, item):
        return {"class": int(self.artifacts.model.predict([item])[0])}

    @kappa.api(input=JsonInput(), batch=True)
    def broken(self, items):
        return [1]
"""


def test_service_holds_several_artifacts_and_apis(make_module, iris):
    X, _, model = iris
    svc = make_module(MULTI).Multi()
    assert sorted(svc.inference_apis) == ["broken", "classify", "predict", "single"]
    svc.pack("model", model).pack("scaler", 1.0)
    np.testing.assert_array_equal(svc.predict(pd.DataFrame(X)), model.predict(X))
    assert list(svc.predict([[5.1, 3.5, 1.4, 0.2]])) == [0]
    assert svc.single([5.1, 3.5, 1.4, 0.2]) == {"class": 0}
    assert svc.inference_apis["classify"].name == "classify"


def test_discarded_items_plus_results_equal_inputs(make_module, iris):
    svc = make_module(MULTI).Multi()
    svc.pack("model", iris[2]).pack("scaler", 1.0)
    assert svc.by_json([{"x": [5.1, 3.5, 1.4, 0.2]}, {"y": 1}]) == [0]


def test_wrong_result_length_is_a_clear_error(make_module, iris):
    svc = make_module(MULTI).Multi()
    svc.pack("model", iris[2]).pack("scaler", 1.0)
    with pytest.raises(InferenceError, match=r"Multi\.broken returned 1 results for 3 inputs"):
        svc.broken([{}, {}, {}])


def test_artifacts_access_and_immutable_metadata(iris_service):
    artifact = iris_service.artifacts["model"]
    assert artifact.metadata["accuracy"] == 0.97
    assert artifact.metadata["features"] == ("a", "b", "c", "d")
    with pytest.raises(TypeError):
        artifact.metadata["accuracy"] = 1.0  # type: ignore[index]
    assert iris_service.artifacts.model is artifact.get()


def test_packing_an_unknown_artifact_names_the_declared_ones(iris_service):
    with pytest.raises(ArtifactError, match=r"no artifact named 'modle'; declared: \['model'\]"):
        iris_service.pack("modle", object())


def test_instances_do_not_share_packed_artifacts(make_module, iris):
    module = make_module(MULTI)
    first, second = module.Multi(), module.Multi()
    first.pack("model", iris[2])
    assert first.artifacts["model"].packed
    assert not second.artifacts["model"].packed
    with pytest.raises(ArtifactError, match="not packed"):
        _ = second.artifacts.model


def test_unknown_api_is_named(iris_service):
    with pytest.raises(InputError, match=r"no API 'nope'; its APIs are \['predict'\]"):
        iris_service.get_inference_api("nope")


def test_api_declaration_errors():
    with pytest.raises(InputError, match="needs input="):
        kappa.api()
    with pytest.raises(InputError, match="supports batch=True only"):
        kappa.api(input=DataframeInput(), batch=False)
    with pytest.raises(
        InputError, match=r"declare it as @kappa.api\(input=DataframeInput\(...\), batch=True\)"
    ):
        kappa.api(input=DataframeInput())  # batch defaults to False, as documented
    with pytest.raises(InputError, match="must be positive"):
        kappa.api(input=JsonInput(), mb_max_batch_size=0)
    with pytest.raises(ArtifactError, match="duplicate artifact names"):
        kappa.artifacts([PickleArtifact("a"), PickleArtifact("a")])
    with pytest.raises(ArtifactError, match="not a Python identifier"):
        PickleArtifact("bad name")


def test_api_settings_are_kept(make_module):
    module = make_module(
        """
        import kappa
        from kappa.adapters import JsonInput, JsonOutput

        class S(kappa.BentoService):
            @kappa.api(input=JsonInput(), output=JsonOutput(), batch=False,
                       mb_max_batch_size=64, mb_max_latency=25)
            def echo(self, item):
                '''Echo the item.'''
                return item
        """
    )
    api = module.S().inference_apis["echo"]
    assert (api.batch, api.mb_max_batch_size, api.mb_max_latency) == (False, 64, 25)
    assert api.doc == "Echo the item."
    assert module.S().echo({"a": 1}) == {"a": 1}
