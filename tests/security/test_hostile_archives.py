"""``kappa import`` of hostile archives and folders: refused before anything is written."""

from __future__ import annotations

import io
import tarfile
import time
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from kappa.cli.main import cli
from kappa.errors import BundleError, RepositoryError
from kappa.repository import open_repository


@pytest.fixture
def exported(iris_service, tmp_path) -> Path:
    iris_service.save()
    target = tmp_path / "bundle.tar.gz"
    open_repository().export(f"IrisClassifier:{iris_service.version}", target)
    return target


def _repository_files(kappa_home: Path) -> list[Path]:
    return [p for p in (kappa_home / "repository").rglob("*") if p.is_file()]


def _tar(path: Path, members: dict[str, bytes]) -> Path:
    with tarfile.open(path, "w:gz") as archive:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return path


def test_an_archive_with_too_many_files_is_refused_quickly(tmp_path, kappa_home, monkeypatch):
    monkeypatch.setenv("KAPPA_IMPORT_MAX_FILES", "100")
    archive = _tar(tmp_path / "many.tar.gz", {f"b/f{i}": b"x" for i in range(5000)})
    start = time.monotonic()
    with pytest.raises(RepositoryError, match=r"more than 100 files \(import.max_files\)"):
        open_repository().import_bundle(str(archive))
    assert time.monotonic() - start < 5
    assert not (kappa_home / "repository").exists() or not _repository_files(kappa_home)


def test_a_compression_bomb_is_refused_at_its_header(tmp_path, kappa_home):
    archive = tmp_path / "bomb.tar.gz"
    size = 64 * 1024**2
    with tarfile.open(archive, "w:gz") as tar:
        info = tarfile.TarInfo("b/kappa.yml")
        info.size = size
        tar.addfile(info, io.BytesIO(bytes(size)))
    assert archive.stat().st_size < size / 500
    with pytest.raises(RepositoryError, match="compression bomb"):
        open_repository().import_bundle(str(archive))
    assert not list(tmp_path.glob("**/kappa.yml"))


def test_the_total_size_is_capped(tmp_path, monkeypatch):
    monkeypatch.setenv("KAPPA_IMPORT_MAX_BYTES", "1000")
    archive = _tar(tmp_path / "big.tar.gz", {"b/a": bytes(600), "b/b": bytes(600)})
    with pytest.raises(RepositoryError, match=r"more than 1000 bytes \(import.max_bytes\)"):
        open_repository().import_bundle(str(archive))


def test_a_bad_limit_setting_is_a_clear_error(monkeypatch):
    from kappa.errors import ConfigError

    monkeypatch.setenv("KAPPA_IMPORT_MAX_FILES", "lots")
    with pytest.raises(ConfigError, match="import.max_files must be a whole number"):
        open_repository()


@pytest.mark.parametrize("version", [".", ".."])
def test_a_manifest_version_that_names_a_folder_is_refused(exported, tmp_path, kappa_home, version):
    folder = tmp_path / "unpacked"
    with tarfile.open(exported) as archive:
        archive.extractall(folder, filter="data")
    bundle = next(folder.iterdir())
    data = yaml.safe_load((bundle / "kappa.yml").read_text())
    data["version"] = version
    (bundle / "kappa.yml").write_text(yaml.safe_dump(data, sort_keys=False))
    before = sorted(_repository_files(kappa_home))
    with pytest.raises(BundleError, match=f"invalid version '{version}'"):
        open_repository().import_bundle(str(bundle))
    assert sorted(_repository_files(kappa_home)) == before
    result = CliRunner().invoke(cli, ["delete", f"IrisClassifier:{version}", "-y"])
    assert result.exit_code != 0 and "invalid version" in result.output
    assert sorted(_repository_files(kappa_home)) == before  # every version is still there


def test_import_leaves_out_files_the_manifest_does_not_list(exported, tmp_path, monkeypatch):
    import kappa

    folder = tmp_path / "unpacked"
    with tarfile.open(exported) as archive:
        archive.extractall(folder, filter="data")
    bundle = next(folder.iterdir())
    (bundle / "src" / "sklearn").mkdir()
    (bundle / "src" / "sklearn" / "__init__.py").write_text("raise SystemExit('ran')")
    data = yaml.safe_load((bundle / "kappa.yml").read_text())
    monkeypatch.setenv("KAPPA_HOME", str(tmp_path / "another_home"))  # a repository that lacks it
    record = open_repository().import_bundle(str(bundle))
    stored = open_repository().local_path(record)
    assert not (stored / "src" / "sklearn").exists()
    assert record.digest == data["digest"]
    assert kappa.load(record.tag).version == data["version"]


def test_a_truncated_archive_is_one_clear_line(exported, tmp_path):
    truncated = tmp_path / "truncated.tar.gz"
    truncated.write_bytes(exported.read_bytes()[:3000])
    result = CliRunner().invoke(cli, ["import", str(truncated)])
    assert result.exit_code == 1
    assert "is not a readable tar.gz archive" in result.output
    assert "Aborted" not in result.output and "Traceback" not in result.output


def test_a_remote_folder_is_checked_before_anything_is_fetched(exported, tmp_path, monkeypatch):
    import fsspec

    folder = tmp_path / "unpacked"
    with tarfile.open(exported) as archive:
        archive.extractall(folder, filter="data")
    bundle = next(folder.iterdir())
    memory = fsspec.filesystem("memory")
    remote = f"/hostile-{time.monotonic_ns()}"
    for file in bundle.rglob("*"):
        if file.is_file():
            memory.pipe_file(f"{remote}/{file.relative_to(bundle).as_posix()}", file.read_bytes())
    memory.pipe_file(f"{remote}/src/planted.py", b"raise SystemExit('ran')")
    monkeypatch.setenv("KAPPA_IMPORT_MAX_FILES", "3")
    with pytest.raises(RepositoryError, match="more than 3 files"):
        open_repository().import_bundle(f"memory://{remote}")
    monkeypatch.delenv("KAPPA_IMPORT_MAX_FILES")
    monkeypatch.setenv("KAPPA_HOME", str(tmp_path / "another_home"))
    record = open_repository().import_bundle(f"memory://{remote}")
    assert not (open_repository().local_path(record) / "src" / "planted.py").exists()
