"""Name -> class registries resolve lazily and name what they know when asked for something else."""

import pytest

import kappa.frameworks
from kappa.adapters.registry import build_adapter
from kappa.errors import ArtifactError, InputError
from kappa.frameworks.registry import artifact_class


def test_adapters_rebuild_from_their_manifest_entry():
    adapter = build_adapter("DataframeInput", {"orient": "records", "columns": ["a"], "dtype": None})
    assert adapter.describe() == "DataframeInput" and adapter.columns == ["a"]
    with pytest.raises(InputError, match="unknown adapter 'CsvInput'; known: .*'DataframeInput'"):
        build_adapter("CsvInput", {})


def test_artifact_classes_resolve_lazily():
    from kappa.frameworks.sklearn import SklearnModelArtifact

    assert artifact_class("SklearnModelArtifact") is SklearnModelArtifact
    assert kappa.frameworks.SklearnModelArtifact is SklearnModelArtifact
    with pytest.raises(ArtifactError, match="unknown artifact type 'KerasModelArtifact'"):
        artifact_class("KerasModelArtifact")
    with pytest.raises(AttributeError):
        _ = kappa.frameworks.NoSuchThing
