"""Each framework artifact survives a real bundle save and load with a real model."""

from __future__ import annotations

import numpy as np
import pytest

import kappa
from kappa.errors import ArtifactError

TEMPLATE = """
import kappa
from kappa.adapters import NumpyInput
from kappa.frameworks.{module} import {cls}

@kappa.artifacts([{cls}("model")])
class Svc(kappa.BentoService):
    @kappa.api(input=NumpyInput(dtype="float32"), batch=True)
    def predict(self, x):
        return self.artifacts.model.predict(x)
"""


def _round_trip(make_module, module, cls, model, X, tmp_path, predict=None):
    svc = make_module(TEMPLATE.format(module=module, cls=cls)).Svc()
    svc.pack("model", model, metadata={"framework": module})
    path = svc.save_to_dir(str(tmp_path / "bundle"))
    loaded = kappa.load(path)
    assert loaded.artifacts["model"].metadata == {"framework": module}
    predict = predict or (lambda m, x: m.predict(x))
    np.testing.assert_allclose(predict(loaded.artifacts.model, X), predict(model, X), rtol=1e-6)
    return loaded


def test_sklearn(make_module, iris, tmp_path):
    X, _, model = iris
    loaded = _round_trip(make_module, "sklearn", "SklearnModelArtifact", model, X, tmp_path)
    np.testing.assert_array_equal(loaded.predict(X.astype("float32")), model.predict(X.astype("float32")))


def test_pickle_stores_any_object(make_module, tmp_path):
    class Doubler:
        def predict(self, x):
            return np.asarray(x) * 2

    _round_trip(make_module, "pickle", "PickleArtifact", Doubler(), np.ones((3, 2)), tmp_path)


@pytest.mark.parametrize("kind", ["sklearn", "booster"])
def test_xgboost(make_module, iris, tmp_path, kind):
    import xgboost as xgb

    X, y, _ = iris
    if kind == "sklearn":
        model = xgb.XGBClassifier(n_estimators=5, max_depth=2).fit(X, y)
        _round_trip(make_module, "xgboost", "XgboostModelArtifact", model, X, tmp_path)
    else:
        model = xgb.train({"max_depth": 2}, xgb.DMatrix(X, label=y), num_boost_round=5)
        _round_trip(
            make_module,
            "xgboost",
            "XgboostModelArtifact",
            model,
            X,
            tmp_path,
            predict=lambda m, x: m.predict(xgb.DMatrix(x)),
        )


@pytest.mark.parametrize("kind", ["sklearn", "booster"])
def test_lightgbm(make_module, iris, tmp_path, kind):
    import lightgbm as lgb

    X, y, _ = iris
    if kind == "sklearn":
        model = lgb.LGBMClassifier(n_estimators=5, verbose=-1).fit(X, y)
    else:
        model = lgb.train(
            {"objective": "multiclass", "num_class": 3, "verbose": -1},
            lgb.Dataset(X, label=y),
            num_boost_round=5,
        )
    _round_trip(make_module, "lightgbm", "LightGBMModelArtifact", model, X, tmp_path)


TORCH_SERVICE = """
import kappa
import torch
from kappa.adapters import NumpyInput
from kappa.frameworks.pytorch import PytorchModelArtifact

class Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.linear = torch.nn.Linear(4, 3)

    def forward(self, x):
        return torch.softmax(self.linear(x), dim=1)

@kappa.artifacts([PytorchModelArtifact("net"), PytorchModelArtifact("scripted")])
class TorchSvc(kappa.BentoService):
    @kappa.api(input=NumpyInput(dtype="float32"), batch=True)
    def predict(self, x):
        with torch.no_grad():
            return self.artifacts.net(torch.from_numpy(x)).numpy()
"""


def test_pytorch_module_and_torchscript(make_module, iris, tmp_path):
    import torch

    torch.manual_seed(0)
    module = make_module(TORCH_SERVICE)
    net = module.Net()
    scripted = torch.jit.script(module.Net())
    svc = module.TorchSvc().pack("net", net).pack("scripted", scripted)
    X = iris[0].astype("float32")
    expected = svc.predict(X)
    loaded = kappa.load(svc.save_to_dir(str(tmp_path / "bundle")))
    np.testing.assert_allclose(loaded.predict(X), expected, rtol=1e-6)
    with torch.no_grad():
        np.testing.assert_allclose(
            loaded.artifacts.scripted(torch.from_numpy(X)).numpy(),
            scripted(torch.from_numpy(X)).numpy(),
            rtol=1e-6,
        )
    with pytest.raises(ArtifactError, match="expected a torch.nn.Module"):
        module.TorchSvc().pack("net", object())


ONNX_SERVICE = """
import kappa
from kappa.adapters import NumpyInput
from kappa.frameworks.onnx import OnnxModelArtifact

@kappa.artifacts([OnnxModelArtifact("model")])
class OnnxSvc(kappa.BentoService):
    @kappa.api(input=NumpyInput(dtype="float32"), batch=True)
    def predict(self, x):
        session = self.artifacts.model
        return session.run(None, {session.get_inputs()[0].name: x})[0]
"""


def _linear_onnx(weights, bias):
    from onnx import TensorProto, helper, numpy_helper

    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "W"], ["xw"]), helper.make_node("Add", ["xw", "b"], ["y"])],
        "linear",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, weights.shape[0]])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, weights.shape[1]])],
        initializer=[numpy_helper.from_array(weights, "W"), numpy_helper.from_array(bias, "b")],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def test_onnx(make_module, iris, tmp_path):
    rng = np.random.default_rng(0)
    weights = rng.normal(size=(4, 3)).astype("float32")
    bias = rng.normal(size=3).astype("float32")
    svc = make_module(ONNX_SERVICE).OnnxSvc().pack("model", _linear_onnx(weights, bias))
    X = iris[0].astype("float32")
    loaded = kappa.load(svc.save_to_dir(str(tmp_path / "bundle")))
    np.testing.assert_allclose(loaded.predict(X), X @ weights + bias, rtol=1e-5)
    with pytest.raises(ArtifactError, match="expected an onnx.ModelProto"):
        make_module(ONNX_SERVICE).OnnxSvc().pack("model", 42)


CUSTOM = """
import json
import kappa
from kappa.adapters import JsonInput
from kappa.frameworks.base import BaseArtifact

class VocabArtifact(BaseArtifact):
    def _validate(self, obj):
        if not isinstance(obj, dict):
            raise TypeError("expects a dict")

    def _save(self, obj, path):
        (path / "vocab.json").write_text(json.dumps(obj))

    def _load(self, path):
        return json.loads((path / "vocab.json").read_text())

@kappa.artifacts([VocabArtifact("vocab")])
class Lookup(kappa.BentoService):
    @kappa.api(input=JsonInput(), batch=True)
    def lookup(self, words):
        return [self.artifacts.vocab.get(w, -1) for w in words]
"""


def test_custom_artifact(make_module, tmp_path):
    module = make_module(CUSTOM)
    svc = module.Lookup().pack("vocab", {"a": 1, "b": 2})
    loaded = kappa.load(svc.save_to_dir(str(tmp_path / "bundle")))
    assert loaded.lookup(["a", "b", "z"]) == [1, 2, -1]
    with pytest.raises(ArtifactError, match="expects a dict"):
        module.Lookup().pack("vocab", [1])


LOADED: list[object] = []  # the services stay loaded, as in a worker (models are followed by their artifact)


def _loaded_model(make_module, module, cls, model, tmp_path):
    svc = make_module(TEMPLATE.format(module=module, cls=cls)).Svc()
    svc.pack("model", model)
    LOADED.append(kappa.load(svc.save_to_dir(str(tmp_path / f"bundle-{module}"))))
    return LOADED[-1].artifacts.model


def test_loaded_models_keep_to_the_process_share_through_their_own_settings(make_module, iris, tmp_path):
    """A worker's share reaches what each framework uses instead of (or beside) OpenMP: n_jobs of
    scikit-learn, XGBoost and LightGBM models, XGBoost's nthread, Torch's intra-op pool."""
    import lightgbm
    import torch
    import xgboost
    from sklearn.ensemble import RandomForestClassifier

    from kappa import threads

    X, y, _ = iris
    forest = _loaded_model(
        make_module,
        "sklearn",
        "SklearnModelArtifact",
        RandomForestClassifier(5, n_jobs=-1).fit(X, y),
        tmp_path,
    )
    xgb_model = _loaded_model(
        make_module,
        "xgboost",
        "XgboostModelArtifact",
        xgboost.XGBClassifier(n_estimators=3, n_jobs=8).fit(X, y),
        tmp_path,
    )
    booster = xgboost.train({"nthread": 8}, xgboost.DMatrix(X, label=y), num_boost_round=2)
    xgb_booster = _loaded_model(make_module, "xgboost", "XgboostModelArtifact", booster, tmp_path / "b")
    lgb_model = _loaded_model(
        make_module,
        "lightgbm",
        "LightGBMModelArtifact",
        lightgbm.LGBMClassifier(n_estimators=3, n_jobs=8, verbose=-1).fit(X, y),
        tmp_path,
    )
    torch_before = torch.get_num_threads()

    def nthread(b):
        import json

        return int(json.loads(b.save_config())["learner"]["generic_param"]["nthread"])

    def own():
        return forest.n_jobs, xgb_model.get_params()["n_jobs"], lgb_model.n_jobs, nthread(xgb_booster)

    loaded_with = own()  # as saved (XGBoost's files keep no n_jobs: None, which means every core)
    with threads.limited(1):
        assert forest.n_jobs == 1 and xgb_model.get_params()["n_jobs"] == 1 and lgb_model.n_jobs == 1
        assert nthread(xgb_booster) == 1 and torch.get_num_threads() == 1
        np.testing.assert_array_equal(forest.predict(X), forest.predict(X))  # still predicts
    assert torch.get_num_threads() == torch_before
    # after the block every model has its own settings back
    assert own() == loaded_with and forest.n_jobs == -1 and lgb_model.n_jobs == 8
    with threads.limited(2):  # a later, wider share is computed from the model's own, not the last
        assert forest.n_jobs == 2 and nthread(xgb_booster) == 2
    aliased = _loaded_model(  # an alias of n_jobs (it wins over n_jobs in LightGBM) is held too
        make_module,
        "lightgbm",
        "LightGBMModelArtifact",
        lightgbm.LGBMClassifier(n_estimators=3, num_threads=8, verbose=-1).fit(X, y),
        tmp_path / "alias",
    )
    with threads.limited(1):
        assert aliased.get_params()["num_threads"] == 1
    assert aliased.get_params()["num_threads"] == 8
    LOADED.clear()
