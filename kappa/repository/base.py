"""What every repository does the same way, whether it holds the database itself
(:class:`~kappa.repository.repository.Repository`) or reaches it through the registry server
(:class:`~kappa.repository.remote.RemoteRepository`): imports, retrieve, export, limits."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from kappa.errors import RepositoryError
from kappa.repository import files
from kappa.repository.records import BundleRecord
from kappa.repository.reference import BundleRef, parse_ref

if TYPE_CHECKING:
    from kappa.bundle.manifest import Manifest
    from kappa.repository.archive import Limits
    from kappa.settings import KappaSettings


class BundleStore:
    settings: KappaSettings

    def get(self, ref: str | BundleRef) -> BundleRecord:
        raise NotImplementedError

    def add_folder(self, bundle_dir: Path) -> BundleRecord:
        raise NotImplementedError

    def local_path(self, ref: str | BundleRef | BundleRecord) -> Path:
        raise NotImplementedError

    def limits(self) -> Limits:
        from kappa.repository.archive import Limits

        return Limits(
            self.settings.import_max_files, self.settings.import_max_bytes, self.settings.import_max_ratio
        )

    def _within_limits(self, source: str, manifest: Manifest) -> list[str]:
        """The paths a bundle is made of (its listed files and ``kappa.yml``), once its manifest
        is within the import limits."""
        from kappa.bundle.manifest import FILENAME

        entries = manifest.all_files
        self.limits().check(source, len(entries), sum(e.size for e in entries))
        return sorted({e.path for e in entries}) + [FILENAME]

    def import_bundle(self, source: str) -> BundleRecord:
        """Import a bundle folder, a ``.tar.gz`` from ``export``, or either at an fsspec URL."""
        from kappa.repository.archive import extract_archive

        with tempfile.TemporaryDirectory(prefix="kappa-import-") as tmp:
            work = Path(tmp)
            if source.endswith((".tar.gz", ".tgz", ".tar")):
                archive = work / "bundle.tar.gz"
                if files.is_local(source):
                    archive = files.local_part(source)
                    if not archive.is_file():
                        raise RepositoryError(f"cannot import {source!r}: no such file")
                else:
                    fs, path = files.filesystem(source)
                    fs.get_file(path, str(archive))
                folder = extract_archive(archive, work / "extracted", self.limits())
            elif files.is_local(source):
                folder = files.local_part(source)
                if not folder.is_dir():
                    raise RepositoryError(f"cannot import {source!r}: no such folder or .tar.gz file")
            else:
                folder = self._download_listed(source, work / "downloaded")
            return self.add_folder(folder)

    def _download_listed(self, source: str, target: Path) -> Path:
        """A remote bundle folder's listed files, checked against the limits before any is fetched."""
        import yaml

        from kappa.bundle.manifest import FILENAME, Manifest

        fs, root = files.filesystem(source)
        where = f"{source.rstrip('/')}/{FILENAME}"
        try:
            manifest = Manifest.from_dict(
                yaml.safe_load(fs.cat_file(f"{root.rstrip('/')}/{FILENAME}")), where
            )
        except FileNotFoundError:
            raise RepositoryError(f"cannot import {source!r}: it has no {FILENAME}") from None
        except yaml.YAMLError as exc:
            raise RepositoryError(f"{where} is not valid YAML: {exc}") from None
        return files.download(source, target, only=self._within_limits(source, manifest))

    def retrieve(self, ref: str, target_dir: Path) -> Path:
        """Copy a bundle into ``target_dir``, which must not exist."""
        if target_dir.exists():
            raise RepositoryError(
                f"{str(target_dir)!r} already exists; retrieve never overwrites, pick a new folder"
            )
        record = self.get(ref)
        target_dir.parent.mkdir(parents=True, exist_ok=True)
        self._copy_bundle(record, target_dir)
        return target_dir

    def _copy_bundle(self, record: BundleRecord, target_dir: Path) -> None:
        files.copy_folder(self.local_path(record), target_dir)

    def export(self, ref: str, target: Path) -> Path:
        from kappa.repository.archive import write_archive

        if target.exists():
            raise RepositoryError(f"{str(target)!r} already exists; pick a new file name")
        record = self.get(ref)
        write_archive(self.local_path(record), target, arcname=f"{record.name}-{record.version}")
        return target

    def deletable(self, ref: str, action: str = "delete") -> BundleRecord:
        """The bundle ``ref`` names, if it may be deleted (or relabelled): an explicit, existing version."""
        parsed = parse_ref(ref)
        if parsed.is_latest:
            raise RepositoryError(
                f"name the version to {action}, not {parsed}; `kappa get {parsed.name}` lists them"
            )
        return self.get(parsed)
