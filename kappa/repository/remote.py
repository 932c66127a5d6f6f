"""The repository, reached through the registry server: what ``open_repository()`` returns when
``gamma_service.url`` is set. Same methods as :class:`kappa.repository.repository.Repository`;
bundles travel as tar streams and land in the local cache keyed by their digest.

Only the standard library talks HTTP here, so a client process imports no database driver.
"""

from __future__ import annotations

import http.client
import json
import logging
import os
import secrets
import shutil
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kappa.errors import (
    AccessDenied,
    BundleError,
    BundleIntegrityError,
    BundleNotFound,
    RegistryError,
    RegistryUnavailable,
    RepositoryError,
    RunNotFound,
    VersionExists,
)
from kappa.redact import register_secret
from kappa.repository.base import BundleStore
from kappa.repository.records import BundleRecord, RunRecord
from kappa.repository.reference import BundleRef, parse_ref

if TYPE_CHECKING:
    from http.client import HTTPResponse

    from kappa.service import BentoService
    from kappa.settings import KappaSettings

log = logging.getLogger(__name__)
TIMEOUT = 60.0
MAX_JSON = 64 * 1024**2  # the largest JSON answer read (a listing of many versions is a few MB)
STORE_RATE = 5e6  # bytes per second the slowest server stores an upload at (for a PUT's timeout)
CHUNK = 1 << 20
_KINDS: dict[str, type[RepositoryError] | type[BundleError]] = {
    "BundleNotFound": BundleNotFound,
    "VersionExists": VersionExists,
    "BundleIntegrityError": BundleIntegrityError,
    "RunNotFound": RunNotFound,
}


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None  # urllib then raises the 3xx as an HTTPError


_OPENER = urllib.request.build_opener(_NoRedirects)


class RemoteRepository(BundleStore):
    def __init__(self, settings: KappaSettings) -> None:
        assert settings.gamma_url is not None
        self.settings = settings
        self.url = settings.gamma_url
        self.base_url = self.url
        self.token = settings.gamma_token
        register_secret(self.token)
        self._manifests: dict[str, dict[str, Any]] = {}

    def location(self, name: str, version: str) -> str:
        return f"{self.url}/api/v1/bundles/{name}/{version}"

    # -- HTTP ----------------------------------------------------------------
    def _open(
        self,
        method: str,
        path: str,
        query: Mapping[str, Any] | None = None,
        body: bytes | Iterable[bytes] | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float = TIMEOUT,
    ) -> HTTPResponse:
        url = self.url + path
        if query:
            url += "?" + urllib.parse.urlencode({k: v for k, v in query.items() if v is not None})
        request = urllib.request.Request(url, data=body, method=method, headers=dict(headers or {}))  # type: ignore[arg-type]
        if self.token:
            request.add_header("Authorization", f"Bearer {self.token}")
        try:
            response: HTTPResponse = _OPENER.open(request, timeout=timeout)
            return response
        except urllib.error.HTTPError as exc:
            if 300 <= exc.code < 400:  # never followed: the token would go wherever it points
                raise RegistryError(
                    f"the registry at {self.url} answered {method} {path} with a redirect to "
                    f"{exc.headers.get('Location')!r}; set gamma_service.url to the registry's own address"
                ) from None
            raise self._refusal(exc, method, path) from None
        except (urllib.error.URLError, ConnectionError, TimeoutError) as exc:
            reason = getattr(exc, "reason", exc)
            source = self.settings.sources.get("gamma_url", "settings")
            raise RegistryUnavailable(
                f"cannot reach the registry at {self.url} ({reason}); is `kappa gamma-service-start` "
                f"running there? (gamma_service.url from {source})"
            ) from None

    def _refusal(self, exc: urllib.error.HTTPError, method: str, path: str) -> RepositoryError:
        try:
            data = json.loads(exc.read(MAX_JSON) or b"{}")
        except (ValueError, OSError, http.client.HTTPException):
            data = {}
        if not isinstance(data, dict):
            data = {}
        message = str(data.get("error") or f"{exc.code} {exc.reason}")
        if exc.code in (401, 403):
            return AccessDenied(f"the registry at {self.url} refused {method} {path}: {message}")
        if exc.code >= 500:
            return RegistryUnavailable(f"the registry at {self.url} failed on {method} {path}: {message}")
        kind = _KINDS.get(str(data.get("kind")))
        if kind is not None:
            return kind(message)  # type: ignore[return-value]
        return RegistryError(message)

    def _json(
        self, method: str, path: str, query: Mapping[str, Any] | None = None, payload: Any = None
    ) -> Any:
        body = None if payload is None else json.dumps(payload, default=str).encode()
        headers = {"Content-Type": "application/json"} if body is not None else None
        with self._open(method, path, query, body, headers) as response:
            try:
                raw = response.read(MAX_JSON + 1)
                if len(raw) > MAX_JSON:
                    raise ValueError(f"an answer of more than {MAX_JSON} bytes")
                return json.loads(raw)
            except (ValueError, OSError, http.client.HTTPException) as exc:
                raise RegistryUnavailable(
                    f"the registry at {self.url} gave an unreadable answer to {method} {path}: {exc}"
                ) from None

    @staticmethod
    def _path(ref: BundleRef) -> str:
        return f"/api/v1/bundles/{urllib.parse.quote(ref.name)}/{urllib.parse.quote(ref.version)}"

    # -- reading -------------------------------------------------------------
    def get(self, ref: str | BundleRef) -> BundleRecord:
        parsed = parse_ref(ref) if isinstance(ref, str) else ref
        data = self._json("GET", self._path(parsed))
        try:
            record = BundleRecord.from_dict(data["bundle"])
            self._manifests[record.tag] = dict(data["manifest"])
        except (KeyError, TypeError, ValueError) as exc:
            raise RegistryError(
                f"the registry at {self.url} answered {parsed} without a bundle record ({exc})"
            ) from None
        return record

    def list(
        self,
        name: str | None = None,
        labels: str | None = None,
        limit: int | None = None,
        offset: int = 0,
        order_by: str = "created_at",
        ascending: bool = False,
    ) -> list[BundleRecord]:
        query = {
            "name": name,
            "labels": labels,
            "limit": limit,
            "offset": offset or None,
            "order_by": order_by,
            "ascending": "true" if ascending else None,
        }
        data = self._json("GET", "/api/v1/bundles", query)
        try:
            return [BundleRecord.from_dict(item) for item in data["bundles"]]
        except (KeyError, TypeError, ValueError) as exc:
            raise RegistryError(
                f"the registry at {self.url} answered a listing without records ({exc})"
            ) from None

    def manifest(self, ref: str | BundleRef) -> dict[str, Any]:
        tag = str(parse_ref(ref) if isinstance(ref, str) else ref)
        if tag not in self._manifests:
            self.get(tag)
        return self._manifests.get(tag) or self._manifests[self.get(tag).tag]

    def count(self) -> dict[str, int]:
        return {"ready": int(self._json("GET", "/api/v1/info")["bundles"])}

    def local_path(self, ref: str | BundleRef | BundleRecord) -> Path:
        """The bundle in the local cache (``$KAPPA_HOME/cache/gamma/<digest>/<name>/<version>``),
        downloaded once, and kept only after every file matches what the registry recorded."""
        from kappa.repository.archive import extract_archive

        record = ref if isinstance(ref, BundleRecord) else self.get(ref)
        if not record.digest:
            raise BundleIntegrityError(
                f"the registry recorded no digest for {record.tag}; nothing was fetched"
            )
        target = cache_path(record.digest, record.name, record.version)
        if (target / "kappa.yml").is_file():
            return target
        target.parent.mkdir(parents=True, exist_ok=True)
        work = target.parent / f".download-{secrets.token_hex(4)}"
        work.mkdir()
        try:
            archive = work / "bundle.tar"
            self._download(record, archive)
            folder = extract_archive(
                archive, work / "bundle", self.limits(), source=f"the download of {record.tag}"
            )
            self._check_download(record, folder)
            _settle(folder, target)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        return target

    def _download(self, record: BundleRecord, archive: Path) -> None:
        most = self.settings.import_max_bytes + 64 * 1024**2  # the files plus their tar headers
        received = 0
        with self._open("GET", self._path(parse_ref(record.tag)) + "/archive") as response:
            declared = response.headers.get("Content-Length")
            if declared is not None and (not declared.isdigit() or int(declared) > most):
                raise RepositoryError(
                    f"the registry offers {record.tag} as {declared} bytes, past import.max_bytes"
                )
            with open(archive, "wb") as out:
                while chunk := response.read(CHUNK):
                    received += len(chunk)
                    if received > most:
                        raise RepositoryError(
                            f"the download of {record.tag} passed import.max_bytes; stopped"
                        )
                    out.write(chunk)

    def _check_download(self, record: BundleRecord, folder: Path) -> None:
        """The downloaded bundle is the one the registry recorded: manifest, digest, every file."""
        from kappa.bundle.integrity import check_digest, unlisted_files, verify
        from kappa.bundle.manifest import canonical, load_manifest

        manifest = load_manifest(folder)
        where = f"the download of {record.tag}"
        if manifest.tag != record.tag or manifest.digest != record.digest:
            raise BundleIntegrityError(
                f"{where} is {manifest.tag} with digest {manifest.digest[:19]}..., not what the registry "
                f"recorded ({record.digest[:19] if record.digest else None}...); nothing was kept"
            )
        if canonical(manifest.to_dict()) != canonical(self.manifest(record.tag)):
            raise BundleIntegrityError(f"{where}: its kappa.yml is not the manifest the registry recorded")
        check_digest(where, manifest.all_files, manifest.digest, record.digest)
        verify(folder, manifest.all_files)
        extra = unlisted_files(folder, manifest.all_files)
        if extra:
            raise BundleIntegrityError(
                f"{where} holds files its manifest does not list: {', '.join(extra[:5])}"
            )

    # -- writing -------------------------------------------------------------
    def save(
        self, service: BentoService, labels: Mapping[str, str] | None = None, version: str | None = None
    ) -> str:
        """Save locally (in the cache), upload, and return the cached folder (``kappa.load`` reads it)."""
        from kappa.bundle.save import save_to_dir
        from kappa.bundle.version import new_version, validate_version
        from kappa.repository.labels import validate_labels

        clean = validate_labels(labels)
        for attempt in range(5):
            current = validate_version(version) if version is not None else new_version()
            work = gamma_cache() / f".save-{secrets.token_hex(4)}"
            work.mkdir(parents=True)
            try:
                folder = work / current
                save_to_dir(service, folder, version=current, labels=clean)
                try:
                    self.add_folder(folder)
                except VersionExists:
                    if version is not None or attempt == 4:
                        raise
                    continue
                manifest = service.manifest
                assert manifest is not None
                target = cache_path(manifest.digest, manifest.name, manifest.version)
                target.parent.mkdir(parents=True, exist_ok=True)
                _settle(folder, target)
            finally:
                shutil.rmtree(work, ignore_errors=True)
            service._bundle_path = str(target)
            log.info("saved %s:%s to the registry %s", service.name, current, self.url)
            return str(target)
        raise RepositoryError(f"could not allocate a new version for {service.name}")  # pragma: no cover

    def add_folder(self, bundle_dir: Path) -> BundleRecord:
        """Upload a bundle folder: its manifest's files and ``kappa.yml``, as one tar stream."""
        from kappa.bundle.manifest import load_manifest
        from kappa.repository import tarstream

        manifest = load_manifest(bundle_dir)
        paths = self._within_limits(str(bundle_dir), manifest)
        members = tarstream.folder_members(bundle_dir, paths)
        headers = {
            "Content-Type": "application/x-tar",
            "Content-Length": str(tarstream.size(members)),
            "X-Kappa-Digest": manifest.digest,
        }
        self._can_write()
        path = self._path(BundleRef(manifest.name, manifest.version))
        # after the last byte the server unpacks, verifies and stores the bundle before it answers
        timeout = TIMEOUT + tarstream.size(members) / STORE_RATE
        with self._open(
            "PUT", path, body=tarstream.chunks(members), headers=headers, timeout=timeout
        ) as response:
            data = json.loads(response.read())
        return BundleRecord.from_dict(data["bundle"])

    def _can_write(self) -> None:
        """Ask before sending a bundle: a refusal that arrives mid-upload reads as a broken connection."""
        info = self._json("GET", "/api/v1/info")
        scope = info.get("scope") if isinstance(info, dict) else None
        if scope not in ("write", "admin"):
            raise AccessDenied(
                f"the registry at {self.url} gives this client {scope or 'no'} access; saving needs a "
                "write token (gamma_service.token, or KAPPA_GAMMA_TOKEN)"
            )

    def set_labels(self, ref: str, labels: Mapping[str, str]) -> BundleRecord:
        parsed = parse_ref(self.deletable(ref, action="relabel").tag)
        self._json("PUT", self._path(parsed) + "/labels", payload={"labels": dict(labels)})
        return self.get(parsed)

    def delete(self, ref: str) -> BundleRecord:
        record = self.deletable(ref)
        self._json("DELETE", self._path(parse_ref(record.tag)))
        return record

    # -- lineage -------------------------------------------------------------
    def record_run(self, report: Mapping[str, Any]) -> RunRecord:
        data = self._json("POST", "/api/v1/runs", payload=dict(report))
        name, _, version = str(report.get("bundle", "")).partition(":")
        return RunRecord(data["run_id"], name, version, dict(report))

    def runs(self) -> RemoteRuns:
        return RemoteRuns(self)


class RemoteRuns:
    """The registry's run records, with :class:`kappa.repository.runs.RunStore`'s reading methods."""

    def __init__(self, repository: RemoteRepository) -> None:
        self.repository = repository

    def add(self, report: Mapping[str, Any]) -> RunRecord:
        return self.repository.record_run(report)

    def get(self, run_id: str) -> RunRecord:
        return _run(self.repository._json("GET", f"/api/v1/runs/{urllib.parse.quote(run_id)}")["run"])

    def list(
        self, name: str | None = None, version: str | None = None, limit: int = 100, offset: int = 0
    ) -> list[RunRecord]:
        query = {"name": name, "version": version, "limit": limit, "offset": offset or None}
        return [_run(item) for item in self.repository._json("GET", "/api/v1/runs", query)["runs"]]


def _run(report: dict[str, Any]) -> RunRecord:
    name, _, version = str(report.get("bundle", "")).partition(":")
    return RunRecord(str(report.get("run_id")), name, version, report)


def gamma_cache() -> Path:
    from kappa.repository.files import cache_dir

    return cache_dir() / "gamma"


def cache_path(digest: str, name: str, version: str) -> Path:
    """Where a bundle lives in this machine's cache: by digest (its files), then by the name
    and version its manifest gives them (two versions may share every file)."""
    from kappa.bundle.version import validate_name, validate_version

    key = digest.removeprefix("sha256:")
    if len(key) != 64 or not all(c in "0123456789abcdef" for c in key):
        raise BundleIntegrityError(f"{digest!r} is not a sha256 digest")
    return gamma_cache() / key / validate_name(name) / validate_version(version)


def _settle(folder: Path, target: Path) -> None:
    """Move a complete bundle folder into its cache place (another process may have been first)."""
    from kappa.bundle.integrity import not_writable_by_others

    not_writable_by_others(folder)
    try:
        os.rename(folder, target)
    except OSError:
        if not (target / "kappa.yml").is_file():
            raise
