"""A bundle runs only the code it was saved with: what is verified, and when (README: Trust model)."""

from __future__ import annotations

import importlib.util
import json
import marshal
import shutil
from pathlib import Path

import pytest
import yaml

import kappa
from kappa.bundle.integrity import bundle_digest, hash_file
from kappa.errors import BundleError, BundleIntegrityError

SERVICE = """
import kappa
from kappa.adapters import DataframeInput
from kappa.frameworks.sklearn import SklearnModelArtifact

@kappa.artifacts([SklearnModelArtifact("model")])
class Guarded(kappa.BentoService):
    @kappa.api(input=DataframeInput(), batch=True)
    def predict(self, df):
        import sklearn  # resolved while the bundle is importable
        return self.artifacts.model.predict(df)
"""


def payload(marker: Path) -> str:
    """Code an attacker plants: it leaves a file behind if it ever runs."""
    return f"open({str(marker)!r}, 'w').write('ran')\n"


@pytest.fixture
def saved(make_module, iris, tmp_path) -> Path:
    module = make_module(SERVICE, name="guarded_service")
    svc = module.Guarded().pack("model", iris[2])
    return Path(svc.save_to_dir(str(tmp_path / "bundle")))


def test_an_extra_module_that_shadows_a_library_refuses_the_load(saved, tmp_path):
    marker = tmp_path / "pwned"
    (saved / "src" / "sklearn").mkdir()
    (saved / "src" / "sklearn" / "__init__.py").write_text(payload(marker))
    with pytest.raises(BundleIntegrityError, match=r"does not list \(src/sklearn/__init__.py\)"):
        kappa.load(str(saved))
    assert not marker.exists()


def test_an_extra_file_next_to_an_artifact_refuses_the_load(saved):
    (saved / "artifacts" / "model" / "extra.pkl").write_bytes(b"\x80\x04N.")
    with pytest.raises(BundleIntegrityError, match="artifacts/model/extra.pkl"):
        kappa.load(str(saved))


def test_forged_bytecode_is_never_imported(saved, tmp_path):
    """A .pyc whose header matches the source's mtime and size would be used by a sys.path import."""
    marker = tmp_path / "pwned"
    source = saved / "src" / "guarded_service.py"
    evil = compile(SERVICE + payload(marker), str(source), "exec")
    stat = source.stat()
    cache = Path(importlib.util.cache_from_source(str(source)))
    cache.parent.mkdir(exist_ok=True)
    header = importlib.util.MAGIC_NUMBER + (0).to_bytes(4, "little")
    header += int(stat.st_mtime).to_bytes(4, "little") + (stat.st_size & 0xFFFFFFFF).to_bytes(4, "little")
    cache.write_bytes(header + marshal.dumps(evil))
    service = kappa.load(str(saved))
    assert not marker.exists()
    assert service.predict([[5.1, 3.5, 1.4, 0.2]]).tolist() == [0]


def test_changed_source_is_refused_before_it_runs(saved, tmp_path):
    marker = tmp_path / "pwned"
    source = saved / "src" / "guarded_service.py"
    source.write_text(payload(marker) + source.read_text())
    with pytest.raises(BundleIntegrityError, match="modified after it was saved"):
        kappa.load(str(saved))
    assert not marker.exists()


def _rewrite_manifest(bundle: Path, changed: str) -> None:
    """What someone who can write the files (not the database) does: new hashes, new digest."""
    manifest_path = bundle / "kappa.yml"
    data = yaml.safe_load(manifest_path.read_text())
    for entry in [*data["files"], *(f for a in data["artifacts"] for f in a["files"])]:
        if entry["path"] == changed:
            sha, size = hash_file(bundle / changed)
            entry["sha256"], entry["size"] = sha, size
    from kappa.bundle.integrity import FileEntry

    entries = [FileEntry(**f) for f in [*data["files"], *(f for a in data["artifacts"] for f in a["files"])]]
    data["digest"] = bundle_digest(entries)
    manifest_path.write_text(yaml.safe_dump(data, sort_keys=False))


def test_files_replaced_in_the_store_are_refused_by_the_database_digest(make_module, iris, tmp_path):
    from sklearn.dummy import DummyClassifier

    module = make_module(SERVICE, name="guarded_service")
    svc = module.Guarded().pack("model", iris[2])
    svc.save()
    folder = Path(kappa.load(f"Guarded:{svc.version}")._bundle_path or "")
    # replace the pickle with another model and make kappa.yml agree with it
    other = module.Guarded().pack("model", DummyClassifier().fit([[0, 0, 0, 0]], [7]))
    staged = Path(other.save_to_dir(str(tmp_path / "other")))
    model_file = next(p for p in (folder / "artifacts" / "model").iterdir() if p.name != "metadata.json")
    shutil.copyfile(staged / "artifacts" / "model" / model_file.name, model_file)
    _rewrite_manifest(folder, model_file.relative_to(folder).as_posix())
    kappa.load(str(folder))  # as a bare folder it is self-consistent...
    with pytest.raises(BundleIntegrityError, match="not the bundle the repository recorded"):
        kappa.load(f"Guarded:{svc.version}")  # ...but not the bundle the database recorded
    from kappa_batch.runner import BatchRunner

    with pytest.raises(BundleIntegrityError, match="not the bundle the repository recorded"):
        BatchRunner(f"Guarded:{svc.version}", "predict")


def test_a_manifest_whose_digest_does_not_match_its_file_list_is_refused(saved):
    data = yaml.safe_load((saved / "kappa.yml").read_text())
    data["files"] = [f for f in data["files"] if f["path"] != "Dockerfile"]
    (saved / "Dockerfile").unlink()
    (saved / "kappa.yml").write_text(yaml.safe_dump(data, sort_keys=False))
    with pytest.raises(BundleIntegrityError, match="file list has digest"):
        kappa.load(str(saved))


def test_the_finder_serves_only_listed_modules(tmp_path):
    from kappa.bundle.importer import BundleFinder

    (tmp_path / "src" / "pkg").mkdir(parents=True)
    (tmp_path / "src" / "pkg" / "evil.py").write_text("raise SystemExit('ran')")
    finder = BundleFinder(tmp_path, {"src/pkg/__init__.py": b"X = 1\n"})
    assert finder.find_spec("pkg") is not None
    assert finder.find_spec("json") is None  # not the bundle's: the normal import system decides
    with pytest.raises(ModuleNotFoundError, match="only the files its manifest lists"):
        finder.find_spec("pkg.evil")


@pytest.mark.parametrize("version", [".", "..", "-x", "a/b", "a b", ""])
def test_names_and_versions_follow_one_strict_pattern(version):
    from kappa.bundle.version import validate_name, validate_version
    from kappa.repository.reference import parse_ref

    with pytest.raises(BundleError, match="invalid version"):
        validate_version(version)
    if version:
        with pytest.raises(BundleError):
            validate_name(version)
        with pytest.raises(BundleError):
            parse_ref(f"Name:{version}")


def test_manifest_names_and_versions_are_validated_where_they_enter(saved):
    from kappa.bundle.manifest import load_manifest

    for field, value in (("version", "."), ("version", ".."), ("name", "../x")):
        data = yaml.safe_load((saved / "kappa.yml").read_text())
        data[field] = value
        (saved / "kappa.yml").write_text(yaml.safe_dump(data, sort_keys=False))
        with pytest.raises(
            BundleError, match=f"invalid {'version' if field == 'version' else 'service name'}"
        ):
            load_manifest(saved)


def test_saved_files_are_not_writable_by_others_whatever_the_umask(make_module, iris, tmp_path):
    import os

    module = make_module(SERVICE, name="guarded_service")
    old = os.umask(0)
    try:
        path = Path(module.Guarded().pack("model", iris[2]).save_to_dir(str(tmp_path / "b")))
    finally:
        os.umask(old)
    modes = {p.relative_to(path).as_posix(): p.stat().st_mode & 0o777 for p in [path, *path.rglob("*")]}
    assert modes and all(mode & 0o022 == 0 for mode in modes.values()), json.dumps(modes)


def test_unlisted_code_below_a_bundle_package_stays_unimportable_after_loading(iris, tmp_path, monkeypatch):
    import importlib
    import sys

    root = tmp_path / "code"
    (root / "guarded_pkg").mkdir(parents=True)
    (root / "guarded_pkg" / "__init__.py").write_text("")
    (root / "guarded_pkg" / "service.py").write_text(SERVICE.replace("class Guarded", "class GuardedPkg"))
    monkeypatch.syspath_prepend(str(root))
    module = importlib.import_module("guarded_pkg.service")
    bundle = Path(module.GuardedPkg().pack("model", iris[2]).save_to_dir(str(tmp_path / "bundle")))
    for name in [m for m in sys.modules if m.startswith("guarded_pkg")]:
        del sys.modules[name]
    monkeypatch.syspath_prepend(str(tmp_path / "elsewhere"))  # the source tree is gone
    sys.path.remove(str(root))
    kappa.load(str(bundle))
    marker = tmp_path / "pwned"
    (bundle / "src" / "guarded_pkg" / "evil.py").write_text(payload(marker))
    loaded = [m for m in sys.modules if m.startswith("kappa_bundles.") and m.endswith(".guarded_pkg")]
    assert loaded
    for package in loaded:
        with pytest.raises(ImportError):
            importlib.import_module(f"{package}.evil")
    assert not marker.exists()


def test_a_spark_or_dask_driver_verifies_the_bundle_before_shipping(saved):
    from kappa_batch.shipping import describe

    with pytest.raises(BundleIntegrityError, match="expected sha256:0000"):
        describe(str(saved), expected_digest="sha256:" + "0" * 64)
    (saved / "src" / "guarded_service.py").write_text("print('changed')\n")
    with pytest.raises(BundleIntegrityError, match="modified after it was saved"):
        describe(str(saved))
