"""Bundles: layout, manifest, integrity, versions, namespaces, and clear errors."""

from __future__ import annotations

import pickle
import re
import subprocess
import sys
import textwrap

import numpy as np
import pandas as pd
import pytest
import yaml

import kappa
from kappa.bundle.version import new_version, validate_version
from kappa.errors import BundleError, BundleIntegrityError, RepositoryError


def test_layout_and_manifest(iris_service, tmp_path):
    path = tmp_path / "bundle"
    iris_service.save_to_dir(str(path))
    for part in [
        "kappa.yml",
        "src",
        "artifacts/model/model.joblib",
        "env/requirements.txt",
        "env/python_env.yaml",
        "Dockerfile",
        "setup.py",
    ]:
        assert (path / part).exists(), part
    manifest = yaml.safe_load((path / "kappa.yml").read_text())
    assert manifest["format_version"] == 1
    assert manifest["name"] == "IrisClassifier"
    assert manifest["version"] == iris_service.version
    assert manifest["created_at"].endswith("Z")
    assert manifest["service"]["class"] == "IrisClassifier"
    assert manifest["apis"][0]["name"] == "predict"
    assert manifest["apis"][0]["input"]["type"] == "DataframeInput"
    assert manifest["apis"][0]["batch"] is True
    artifact = manifest["artifacts"][0]
    assert artifact["type"] == "SklearnModelArtifact"
    assert artifact["metadata"] == {"accuracy": 0.97, "features": ["a", "b", "c", "d"]}
    model_file = next(f for f in artifact["files"] if f["path"].endswith("model.joblib"))
    assert model_file["size"] == (path / model_file["path"]).stat().st_size
    assert re.fullmatch(r"[0-9a-f]{64}", model_file["sha256"])
    assert manifest["env"]["python_version"] == ".".join(map(str, sys.version_info[:3]))
    assert manifest["digest"].startswith("sha256:")
    assert not list(tmp_path.glob(".*staging*"))


def test_loaded_service_predicts_exactly_the_same(iris_service, iris, tmp_path):
    X = pd.DataFrame(iris[0])
    loaded = kappa.load(iris_service.save_to_dir(str(tmp_path / "b")))
    np.testing.assert_array_equal(loaded.predict(X), iris_service.predict(X))
    assert loaded.version == iris_service.version
    assert loaded.artifacts["model"].metadata["accuracy"] == 0.97


def test_requirements_are_pinned_and_include_what_artifacts_need(make_module, iris, tmp_path):
    from importlib.metadata import version

    module = make_module(
        """
        import kappa
        import pandas as pd
        from kappa.adapters import DataframeInput
        from kappa.frameworks.sklearn import SklearnModelArtifact

        @kappa.env(infer_pip_packages=True, pip_packages=["pyyaml"])
        @kappa.artifacts([SklearnModelArtifact("model")])
        class Svc(kappa.BentoService):
            @kappa.api(input=DataframeInput(), batch=True)
            def predict(self, df):
                return self.artifacts.model.predict(pd.DataFrame(df))
        """
    )
    svc = module.Svc().pack("model", iris[2])
    path = tmp_path / "b"
    svc.save_to_dir(str(path))
    lines = (path / "env" / "requirements.txt").read_text().split()
    assert lines[:3] == ["--find-links", ".", f"kappa-engine[online]=={kappa.__version__}"]
    assert f"pandas=={version('pandas')}" in lines
    assert f"scikit-learn=={version('scikit-learn')}" in lines
    assert f"pyyaml=={version('pyyaml')}" in lines
    assert all("==" in line for line in lines[2:])


def test_requirements_txt_file_overrides(make_module, tmp_path, iris):
    req = tmp_path / "requirements.txt"
    req.write_text("# pinned by hand\nscikit-learn==1.0\nnumpy\n")
    module = make_module(
        f"""
        import kappa
        from kappa.adapters import JsonInput
        from kappa.frameworks.sklearn import SklearnModelArtifact

        @kappa.env(requirements_txt_file={str(req)!r}, infer_pip_packages=True, pip_packages=["pandas"],
                   conda_dependencies=["libgomp"], setup_sh="echo hi")
        @kappa.artifacts([SklearnModelArtifact("model")])
        class Svc(kappa.BentoService):
            @kappa.api(input=JsonInput(), batch=True)
            def f(self, items):
                return items
        """
    )
    path = tmp_path / "b"
    module.Svc().pack("model", iris[2]).save_to_dir(str(path))
    assert (path / "env" / "requirements.txt").read_text().split() == [
        "--find-links",
        ".",
        f"kappa-engine[online]=={kappa.__version__}",
        "scikit-learn==1.0",
        "numpy",
    ]
    conda = yaml.safe_load((path / "env" / "conda.yaml").read_text())
    assert "libgomp" in conda["dependencies"]
    assert (path / "setup.sh").read_text() == "echo hi"
    assert "RUN bash setup.sh" in (path / "Dockerfile").read_text()


def test_local_modules_are_copied_and_used(make_module, tmp_path):
    module = make_module(
        """
        import kappa
        import features
        from kappa.adapters import JsonInput

        class Svc(kappa.BentoService):
            @kappa.api(input=JsonInput(), batch=True)
            def f(self, items):
                return [features.transform(i) for i in items]
        """,
        helpers={
            "features": "import util_mod\ndef transform(x):\n    return util_mod.scale(x)\n",
            "util_mod": "def scale(x):\n    return x * 10\n",
        },
    )
    path = tmp_path / "b"
    module.Svc().save_to_dir(str(path))
    assert sorted(p.name for p in (path / "src").iterdir()) == sorted(
        [f"{module.__name__}.py", "features.py", "util_mod.py"]
    )
    # Loading in a fresh interpreter that cannot see the original files.
    code = f"import kappa; print(kappa.load({str(path)!r}).f([1, 2]))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[10, 20]"


def test_two_versions_load_side_by_side(make_module, tmp_path):
    source = """
    import kappa
    import helper_v
    from kappa.adapters import JsonInput

    class Versioned(kappa.BentoService):
        @kappa.api(input=JsonInput(), batch=True)
        def which(self, items):
            return [helper_v.VALUE for _ in items]
    """
    paths = []
    for value in (1, 2):
        module = make_module(source, helpers={"helper_v": f"VALUE = {value}\n"}, name="versioned_svc")
        paths.append(module.Versioned().save_to_dir(str(tmp_path / f"v{value}")))
        sys.modules.pop("versioned_svc"), sys.modules.pop("helper_v")
        sys.path.pop(0)
    first, second = kappa.load(paths[0]), kappa.load(paths[1])
    assert first.which([0]) == [1]
    assert second.which([0]) == [2]
    assert type(first) is not type(second)
    assert "versioned_svc" not in sys.modules and "helper_v" not in sys.modules


def test_tampered_artifact_is_refused_before_unpickling(make_module, tmp_path):
    module = make_module(
        """
        import kappa
        from kappa.adapters import JsonInput
        from kappa.frameworks.pickle import PickleArtifact

        @kappa.artifacts([PickleArtifact("model")])
        class P(kappa.BentoService):
            @kappa.api(input=JsonInput(), batch=True)
            def f(self, items):
                return items
        """
    )
    path = tmp_path / "b"
    module.P().pack("model", {"ok": True}).save_to_dir(str(path))
    marker = tmp_path / "unpickled"

    class Evil:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    (path / "artifacts" / "model" / "model.pkl").write_bytes(pickle.dumps(Evil()))
    with pytest.raises(BundleIntegrityError, match=r"modified after it was saved: artifacts/model/model.pkl"):
        kappa.load(str(path))
    assert not marker.exists()


def test_tampered_source_is_refused(iris_service, tmp_path):
    path = tmp_path / "b"
    iris_service.save_to_dir(str(path))
    source = next((path / "src").glob("*.py"))
    source.write_text(source.read_text() + "\nraise SystemExit('tampered code ran')\n")
    with pytest.raises(BundleIntegrityError, match=f"src/{source.name}"):
        kappa.load(str(path))


def test_newer_format_is_refused(iris_service, tmp_path):
    path = tmp_path / "b"
    iris_service.save_to_dir(str(path))
    manifest = yaml.safe_load((path / "kappa.yml").read_text())
    manifest["format_version"] = 99
    (path / "kappa.yml").write_text(yaml.safe_dump(manifest))
    with pytest.raises(BundleError, match=r"bundle format 99, newer than .* upgrade Kappa"):
        kappa.load(str(path))


def test_missing_bundle_path(tmp_path):
    with pytest.raises(BundleError, match="no bundle at .*the folder does not exist"):
        kappa.load(str(tmp_path / "nothing-here"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(BundleError, match="has no kappa.yml"):
        kappa.load(str(tmp_path / "empty"))


def test_saving_before_packing_names_the_artifact(make_module, tmp_path):
    from tests.conftest import IRIS_SERVICE

    svc = make_module(IRIS_SERVICE).IrisClassifier()
    with pytest.raises(BundleError, match=r"artifact\(s\) \['model'\] are not packed"):
        svc.save_to_dir(str(tmp_path / "b"))
    assert not (tmp_path / "b").exists()


def test_existing_folder_is_never_overwritten(iris_service, tmp_path):
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "keep.txt").write_text("mine")
    with pytest.raises(BundleError, match="already exists"):
        iris_service.save_to_dir(str(tmp_path / "b"))
    assert (tmp_path / "b" / "keep.txt").read_text() == "mine"


def test_service_in_main_says_how_to_fix(tmp_path):
    script = tmp_path / "script.py"
    script.write_text(
        textwrap.dedent(
            f"""
            import kappa
            from kappa.adapters import JsonInput
            from kappa.errors import BundleError

            class Inline(kappa.BentoService):
                @kappa.api(input=JsonInput(), batch=True)
                def f(self, items):
                    return items

            try:
                Inline().save_to_dir({str(tmp_path / "b")!r})
            except BundleError as exc:
                print(exc)
            """
        )
    )
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, check=True)
    assert "defined in __main__" in out.stdout
    assert "move the class into a module file" in out.stdout


@pytest.mark.parametrize("bad", ["latest", "has space", "", "x" * 129, "a/b", "LATEST"])
def test_invalid_versions_are_refused(iris_service, bad):
    with pytest.raises(BundleError, match="invalid version"):
        iris_service.save(version=bad)


def test_generated_versions():
    version = new_version()
    assert re.fullmatch(r"\d{8}T\d{6}Z_[0-9A-F]{8}", version)
    assert validate_version(version) == version
    assert len({new_version() for _ in range(200)}) == 200


def test_save_into_repository_and_load_latest(iris_service, kappa_home):
    first = iris_service.save(labels={"framework": "sklearn"})
    first_version = iris_service.version
    second = iris_service.save(version="v2.0")
    assert first != second
    assert first.startswith(str(kappa_home / "repository" / "IrisClassifier"))
    assert (kappa_home / "storage.db").exists()
    latest = kappa.load("IrisClassifier:latest")
    assert latest.version == "v2.0"
    assert kappa.load("IrisClassifier").version == "v2.0"
    pinned = kappa.load(f"IrisClassifier:{first_version}")
    assert pinned.labels == {"framework": "sklearn"}
    with pytest.raises(RepositoryError, match="already exists"):
        iris_service.save(version="v2.0")
    with pytest.raises(BundleError, match="IrisClassifier:nope not found"):
        kappa.load("IrisClassifier:nope")
    with pytest.raises(BundleError, match="no bundle named Unknown"):
        kappa.load("Unknown:latest")


def test_labels_are_validated(iris_service):
    with pytest.raises(RepositoryError, match="invalid label value"):
        iris_service.save(labels={"team": "-bad"})
    with pytest.raises(RepositoryError, match="invalid label key"):
        iris_service.save(labels={"x" * 64: "ok"})


def test_web_static_content_and_docker_base_image_travel(make_module, tmp_path):
    web = tmp_path / "site"
    (web / "css").mkdir(parents=True)
    (web / "index.html").write_text("<h1>iris</h1>")
    (web / "css" / "a.css").write_text("h1{}")
    module = make_module(
        f"""
        import kappa
        from kappa.adapters import JsonInput

        @kappa.web_static_content({str(web)!r})
        @kappa.env(docker_base_image="python:3.11-bookworm")
        class Web(kappa.BentoService):
            @kappa.api(input=JsonInput(), batch=True)
            def f(self, items):
                return items
        """
    )
    path = tmp_path / "b"
    module.Web().save_to_dir(str(path))
    assert (path / "web" / "index.html").read_text() == "<h1>iris</h1>"
    assert "FROM python:3.11-bookworm" in (path / "Dockerfile").read_text().splitlines()
    manifest = kappa.load(str(path)).manifest
    assert manifest.web_static_content == "web"
    assert "web/css/a.css" in {f.path for f in manifest.files}
