"""The registry's REST API (``/api/v1``): bundles (list, get, upload, download, delete,
labels) and scoring runs. Bundles travel as tar streams, never whole in memory."""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kappa.bundle.version import validate_name, validate_version
from kappa.errors import BundleIntegrityError, InputError, KappaError
from kappa.repository import files, tarstream
from kappa.repository.reference import LATEST

if TYPE_CHECKING:
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import Route

    from kappa.repository.records import BundleRecord
    from kappa.repository.repository import Repository
    from kappa_gamma.access import Gate

log = logging.getLogger(__name__)
PREFIX = "/api/v1"
DIGEST_HEADER = "x-kappa-digest"
MAX_JSON = 1_000_000
IDLE_SECONDS = 60.0  # an upload that sends nothing this long is dropped


DATABASE_AWAY = "the registry's database did not answer; try again shortly (the server's log says why)"


def public_text(exc: KappaError) -> str:
    """What a client is told of ``exc``: a database outage's text names the database and its
    address, so clients get :data:`DATABASE_AWAY` and the server's log the text."""
    from kappa.errors import MetadataUnavailable
    from kappa.redact import redact

    if isinstance(exc, MetadataUnavailable):
        log.error("%s", redact(str(exc)))
        return DATABASE_AWAY
    return str(exc)


def public_status(exc: KappaError, status: int) -> int:
    """``status``, or 503 for a database outage."""
    from kappa.errors import MetadataUnavailable

    return 503 if isinstance(exc, MetadataUnavailable) else status


class PayloadTooLarge(InputError):
    """An upload past ``import.max_bytes`` (HTTP 413)."""


class StoreFailure(KappaError):
    """The server's own store failed (HTTP 503): the client did nothing wrong."""


class UploadStalled(InputError):
    """An upload whose client stopped sending (HTTP 408)."""


@dataclass(frozen=True)
class Registry:
    """What every handler works with: the repository, who may do what, where uploads stage."""

    repository: Repository
    gate: Gate
    staging: Path


def registry(request: Request) -> Registry:
    found: Registry = request.app.state.registry
    return found


def _ref(request: Request) -> str:
    name = validate_name(request.path_params["name"])
    version = request.path_params["version"]
    return f"{name}:{version if version == LATEST else validate_version(version)}"


async def threaded(func: Any, *args: Any) -> Any:
    """``func(*args)`` in the threadpool: the repository's calls block."""
    from starlette.concurrency import run_in_threadpool

    return await run_in_threadpool(func, *args)


async def read_body(request: Request, limit: int, what: str) -> bytes:
    """A small request body, read no further than ``limit`` bytes (PayloadTooLarge past it)."""
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise PayloadTooLarge(f"{what} is at most {limit} bytes")
    return body


async def _json_body(request: Request) -> Any:
    body = await read_body(request, MAX_JSON, "a JSON body")
    try:
        return json.loads(body or b"null")
    except (ValueError, RecursionError) as exc:
        raise InputError(f"the body is not JSON: {str(exc)[:200]}") from None


def _public(request: Request, record: BundleRecord) -> dict[str, Any]:
    """A record as clients see it: ``uri`` is where this API serves the bundle, not where the
    server stores it."""
    data = record.to_dict()
    data["uri"] = f"{str(request.base_url).rstrip('/')}{PREFIX}/bundles/{record.name}/{record.version}"
    return data


def _reply(data: Any, status: int = 200) -> Response:
    from starlette.responses import JSONResponse

    return JSONResponse(data, status_code=status)


# -- bundles -----------------------------------------------------------------
async def list_bundles(request: Request) -> Response:
    reg = registry(request)
    await reg.gate.require(request, "read")
    query = request.query_params
    try:
        limit = int(query["limit"]) if query.get("limit") else None
        offset = int(query.get("offset") or 0)
    except ValueError:
        raise InputError("limit and offset are whole numbers") from None
    if (limit is not None and limit < 1) or offset < 0:
        raise InputError("limit is at least 1 and offset at least 0")
    name = query.get("name") or None
    records = await threaded(
        lambda: reg.repository.list(
            validate_name(name) if name else None,
            query.get("labels") or None,
            limit,
            offset,
            query.get("order_by") or "created_at",
            query.get("ascending") in ("1", "true", "yes"),
        )
    )
    return _reply({"bundles": [_public(request, r) for r in records]})


async def get_bundle(request: Request) -> Response:
    reg = registry(request)
    await reg.gate.require(request, "read")
    ref = _ref(request)

    def find() -> dict[str, Any]:
        record = reg.repository.get(ref)
        return {"bundle": _public(request, record), "manifest": reg.repository.manifest(record.tag)}

    return _reply(await threaded(find))


def bundle_members(repository: Repository, record: BundleRecord) -> list[tarstream.Member]:
    """The stored files of ``record`` (its manifest's list and ``kappa.yml``) as tar members."""
    from kappa.bundle.manifest import FILENAME, Manifest

    manifest = Manifest.from_dict(repository.manifest(record.tag), record.tag)
    paths = sorted({e.path for e in manifest.all_files}) + [FILENAME]
    if files.is_local(record.uri):
        return tarstream.folder_members(files.local_part(record.uri), paths)
    fs, root = files.filesystem(record.uri)
    return tarstream.fs_members(fs, root, paths)


async def download_bundle(request: Request) -> Response:
    from starlette.responses import StreamingResponse

    reg = registry(request)
    await reg.gate.require(request, "read")
    ref = _ref(request)

    def prepare() -> tuple[BundleRecord, list[tarstream.Member]]:
        record = reg.repository.get(ref)
        return record, bundle_members(reg.repository, record)

    try:
        record, members = await threaded(prepare)
    except OSError as exc:
        log.error("cannot read the files of %s from the store: %s", ref, exc)
        raise StoreFailure(f"the files of {ref} cannot be read from the store; see the server log") from None
    return StreamingResponse(
        tarstream.chunks(members),
        media_type="application/x-tar",
        headers={
            "Content-Length": str(tarstream.size(members)),
            "Content-Disposition": f'attachment; filename="{record.name}-{record.version}.tar"',
            "X-Kappa-Bundle": record.tag,
            "X-Kappa-Digest": record.digest or "",
        },
    )


async def upload_bundle(request: Request) -> Response:
    """PUT a bundle as a tar stream; it becomes visible only once stored whole and verified."""
    from starlette.requests import ClientDisconnect

    reg = registry(request)
    await reg.gate.require(request, "write")
    ref = _ref(request)
    if ref.endswith(f":{LATEST}"):
        raise InputError("upload to an explicit version, not latest")
    digest = request.headers.get(DIGEST_HEADER)
    if not digest:
        raise InputError(f"send the bundle's digest (its kappa.yml `digest`) in the {DIGEST_HEADER} header")
    declared = request.headers.get("content-length")
    limit = reg.repository.settings.import_max_bytes + 64 * 1024**2  # tar headers on top of the files
    if declared is not None and (not declared.isdigit() or int(declared) > limit):
        raise PayloadTooLarge(f"refusing an upload of {declared} bytes (import.max_bytes)")
    reg.staging.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="upload-", dir=reg.staging))
    try:
        archive = work / "bundle.tar"
        received = 0
        with open(archive, "wb") as out:
            try:
                async for chunk in _paced(request, ref):
                    received += len(chunk)
                    if received > limit:
                        raise PayloadTooLarge(
                            f"refusing an upload of more than {limit} bytes (import.max_bytes)"
                        )
                    out.write(chunk)
            except ClientDisconnect:
                raise InputError(
                    f"the upload of {ref} broke off after {received} bytes; nothing was stored"
                ) from None
        if declared is not None and received != int(declared):
            raise InputError(
                f"the upload of {ref} is truncated ({received} of {declared} bytes); nothing was stored"
            )
        record = await threaded(_store_upload, reg.repository, archive, work, ref, digest)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    log.info("stored %s (%s)", record.tag, (record.digest or "")[:19])
    return _reply({"bundle": _public(request, record)}, 201)


async def _paced(request: Request, ref: str) -> AsyncIterator[bytes]:
    """The request body, failing when the client sends nothing for IDLE_SECONDS."""
    import asyncio

    chunks = request.stream().__aiter__()
    while True:
        try:
            chunk = await asyncio.wait_for(chunks.__anext__(), IDLE_SECONDS)
        except StopAsyncIteration:
            return
        except asyncio.TimeoutError:
            raise UploadStalled(
                f"the upload of {ref} sent nothing for {IDLE_SECONDS:.0f} s; nothing was stored"
            ) from None
        yield chunk


def _store_upload(repository: Repository, archive: Path, work: Path, ref: str, digest: str) -> BundleRecord:
    """Unpack, check and store an upload; its messages name the upload, never the staging folder."""
    try:
        return _unpack_and_store(repository, archive, work, ref, digest)
    except KappaError as exc:
        message = str(exc).replace(str(work / "extracted"), f"the upload of {ref}").replace(str(work), "")
        if message == str(exc):
            raise
        raise type(exc)(message) from None


def _unpack_and_store(
    repository: Repository, archive: Path, work: Path, ref: str, digest: str
) -> BundleRecord:
    from kappa.bundle.manifest import load_manifest
    from kappa.repository.archive import extract_archive

    folder = extract_archive(archive, work / "extracted", repository.limits(), source=f"the upload of {ref}")
    manifest = load_manifest(folder)
    if manifest.tag != ref:
        raise InputError(f"the uploaded bundle is {manifest.tag}, not {ref}; nothing was stored")
    if manifest.digest != digest:
        raise BundleIntegrityError(
            f"the uploaded bundle's digest {manifest.digest[:19]}... is not the "
            f"{digest[:19]}... its {DIGEST_HEADER} header says; nothing was stored"
        )
    return repository.add_folder(folder)


async def delete_bundle(request: Request) -> Response:
    reg = registry(request)
    await reg.gate.require(request, "admin")
    ref = _ref(request)
    record = await threaded(reg.repository.delete, ref)
    return _reply({"deleted": record.tag})


async def labels(request: Request) -> Response:
    reg = registry(request)
    ref = _ref(request)
    if request.method == "GET":
        await reg.gate.require(request, "read")
        record = await threaded(reg.repository.get, ref)
        return _reply({"bundle": record.tag, "labels": record.labels})
    await reg.gate.require(request, "write")
    body = await _json_body(request)
    if not isinstance(body, dict) or not isinstance(body.get("labels"), dict):
        raise InputError('send {"labels": {"key": "value", ...}}')
    record = await threaded(reg.repository.set_labels, ref, body["labels"])
    return _reply({"bundle": record.tag, "labels": record.labels})


# -- runs --------------------------------------------------------------------
async def post_run(request: Request) -> Response:
    reg = registry(request)
    await reg.gate.require(request, "write")
    report = await _json_body(request)

    def store() -> Any:
        from kappa.repository.runs import check_report

        data = check_report(report)
        name, _, version = data["bundle"].partition(":")
        if not reg.repository.metadata.ever_stored(name, version):
            raise InputError(
                f"{data['bundle']} was never stored in this registry; a run names the bundle it used"
            )
        return reg.repository.record_run(data)

    record = await threaded(store)
    return _reply({"run_id": record.run_id}, 201)


async def list_runs(request: Request) -> Response:
    reg = registry(request)
    await reg.gate.require(request, "read")
    query = request.query_params
    try:
        limit = int(query.get("limit") or 100)
        offset = int(query.get("offset") or 0)
    except ValueError:
        raise InputError("limit and offset are whole numbers") from None
    if not 1 <= limit <= 1000 or offset < 0:
        raise InputError("limit is 1 to 1000 and offset at least 0")
    name = query.get("name") or None
    records = await threaded(
        lambda: reg.repository.runs().list(
            validate_name(name) if name else None, query.get("version") or None, limit, offset
        )
    )
    return _reply({"runs": [r.report for r in records]})


async def get_run(request: Request) -> Response:
    reg = registry(request)
    await reg.gate.require(request, "read")
    record = await threaded(lambda: reg.repository.runs().get(request.path_params["run_id"]))
    return _reply({"run": record.report})


async def info(request: Request) -> Response:
    from kappa._version import __version__

    reg = registry(request)
    scope = await reg.gate.require(request, "read")
    count = await threaded(reg.repository.count)
    return _reply({"kappa_version": __version__, "bundles": count["ready"], "scope": scope})


def routes() -> list[Route]:
    from starlette.routing import Route

    bundle = PREFIX + "/bundles/{name}/{version}"
    return [
        Route(PREFIX + "/info", info, methods=["GET"]),
        Route(PREFIX + "/bundles", list_bundles, methods=["GET"]),
        Route(bundle, get_bundle, methods=["GET"]),
        Route(bundle, upload_bundle, methods=["PUT"]),
        Route(bundle, delete_bundle, methods=["DELETE"]),
        Route(bundle + "/archive", download_bundle, methods=["GET"]),
        Route(bundle + "/labels", labels, methods=["GET", "PUT"]),
        Route(PREFIX + "/runs", post_run, methods=["POST"]),
        Route(PREFIX + "/runs", list_runs, methods=["GET"]),
        Route(PREFIX + "/runs/{run_id}", get_run, methods=["GET"]),
    ]
