"""The registry server as a real process: clients hold a URL and a token, and every repository
operation goes through it (SQLite + local files, and PostgreSQL + S3)."""

from __future__ import annotations

import io
import json
import tarfile
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

import kappa
from kappa.cli.main import cli

pytestmark = pytest.mark.server


def call(server, method, path, token=None, body=None, headers=None):
    """(status, parsed JSON or raw bytes) of one request to the server."""
    request = urllib.request.Request(server.url + path, data=body, method=method, headers=dict(headers or {}))
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            status, raw, kind = response.status, response.read(), response.headers.get("content-type", "")
    except urllib.error.HTTPError as exc:
        status, raw, kind = exc.code, exc.read(), exc.headers.get("content-type", "")
    return status, json.loads(raw) if "json" in kind else raw


def kappa_cli(*args):
    result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    return result


@pytest.fixture(
    params=["sqlite-local", pytest.param("postgres-s3", marks=[pytest.mark.postgres, pytest.mark.s3])]
)
def server(request, monkeypatch):
    """A client of the session's registry server (each backend), with a write token."""
    found = request.getfixturevalue("gamma" if request.param == "sqlite-local" else "gamma_team")
    for key, value in found.client_env("write").items():
        monkeypatch.setenv(key, value)
    return found


def test_every_repository_operation_goes_through_the_server(server, iris_service, kappa_home, tmp_path, iris):
    name = type(iris_service).__name__
    path = iris_service.save(labels={"stage": "qa", "team": "risk"})
    version = iris_service.version
    # the client holds a URL and a token: no database, no store of its own
    assert not (kappa_home / "storage.db").exists() and not (kappa_home / "repository").exists()
    assert Path(path).is_relative_to(kappa_home / "cache" / "gamma")
    loaded = kappa.load(f"{name}:latest")
    X = pd.DataFrame(iris[0][:5])
    assert loaded.version == version
    assert np.array_equal(loaded.predict(X), iris[2].predict(iris[0][:5]))

    # (other tests of the session share this server: select this test's versions by label)
    listed = json.loads(kappa_cli("list", name, "--labels", "team=risk", "-o", "json").output)
    assert [b["version"] for b in listed] == [version] and listed[0]["labels"] == {
        "stage": "qa",
        "team": "risk",
    }
    assert json.loads(kappa_cli("list", "--labels", "stage In (qa, prod), team=risk", "-o", "json").output)
    assert json.loads(kappa_cli("list", name, "--labels", "stage=prod", "-o", "json").output) == []
    got = kappa_cli("get", f"{name}:{version}", "-o", "json")
    assert json.loads(got.output)["digest"] == iris_service.manifest.digest

    from kappa.repository import open_repository

    relabelled = open_repository().set_labels(f"{name}:{version}", {"stage": "prod"})
    assert relabelled.labels == {"stage": "prod"}
    assert [
        b["version"]
        for b in json.loads(kappa_cli("list", name, "--labels", "stage=prod", "-o", "json").output)
    ] == [version]
    info = json.loads(kappa_cli("info", "-o", "json").output)
    assert info["gamma_url"] == server.url and info["bundles"] >= 1

    retrieved = kappa_cli("retrieve", f"{name}:{version}", "--target_dir", str(tmp_path / "copy"))
    assert retrieved.exit_code == 0 and (tmp_path / "copy" / "kappa.yml").is_file()
    exported = kappa_cli("export", f"{name}:{version}", str(tmp_path / "b.tar.gz"))
    assert exported.exit_code == 0
    # delete needs the admin token; the write token is refused with 403's message
    refused = kappa_cli("delete", f"{name}:{version}", "-y")
    assert refused.exit_code != 0 and "scope 'write'" in refused.output and "admin" in refused.output
    admin = {"KAPPA_GAMMA_TOKEN": server.tokens["admin"]}
    deleted = CliRunner(env=admin).invoke(cli, ["delete", f"{name}:{version}", "-y"])
    assert deleted.exit_code == 0, deleted.output
    missing = kappa_cli("get", f"{name}:{version}")
    assert missing.exit_code != 0 and "not found" in missing.output
    # a deleted version is never reused, and the server says so
    again = kappa_cli("import", str(tmp_path / "b.tar.gz"))
    assert again.exit_code != 0 and "never reused" in again.output
    # a bundle folder goes in through the server, its digest checked there
    folder = iris_service.save_to_dir(str(tmp_path / "folder"))
    imported = kappa_cli("import", folder)
    assert imported.exit_code == 0, imported.output
    assert kappa.load(f"{name}:latest").manifest.digest == iris_service.manifest.digest


def test_tokens_and_scopes(gamma):
    assert call(gamma, "GET", "/api/v1/bundles")[0] == 401
    status, body = call(gamma, "GET", "/api/v1/bundles", token="kgt_nobody_secret")
    assert status == 401 and "unknown token" in body["error"]
    assert call(gamma, "GET", "/api/v1/bundles", token=gamma.tokens["read"])[0] == 200
    status, body = call(gamma, "PUT", "/api/v1/bundles/A/v1", token=gamma.tokens["read"], body=b"x")
    assert status == 403 and "needs 'write'" in body["error"]
    status, body = call(gamma, "DELETE", "/api/v1/bundles/A/v1", token=gamma.tokens["write"])
    assert status == 403 and "needs 'admin'" in body["error"]
    run = {"run_id": "x" * 8}
    assert (
        call(gamma, "POST", "/api/v1/runs", token=gamma.tokens["read"], body=json.dumps(run).encode())[0]
        == 403
    )


def test_anonymous_read_only_when_allowed_and_revoked_tokens(tmp_path):
    import subprocess
    import sys

    from tests.servers import gamma_server

    with gamma_server(tmp_path / "anon", anonymous_read=True) as server:
        assert call(server, "GET", "/api/v1/bundles")[0] == 200
        assert call(server, "GET", "/ui")[0] == 200
        assert call(server, "PUT", "/api/v1/bundles/A/v1", body=b"x")[0] == 401
        token_id = server.tokens["read"].split("_")[1]
        kappa = str(Path(sys.executable).parent / "kappa")
        subprocess.run([kappa, "gamma", "token", "revoke", token_id], env=server.env, check=True)
        status, body = call(server, "GET", "/api/v1/bundles", token=server.tokens["read"])
        assert status == 401 and "revoked" in body["error"]


def test_openapi_describes_the_api(gamma):
    status, spec = call(gamma, "GET", "/openapi.json")
    assert status == 200 and spec["openapi"].startswith("3.")
    bundle = spec["paths"]["/api/v1/bundles/{name}/{version}"]
    assert {"get", "put", "delete"} <= set(bundle)
    assert {"/api/v1/runs", "/api/v1/runs/{run_id}", "/api/v1/bundles/{name}/{version}/archive"} <= set(
        spec["paths"]
    )
    status, page = call(gamma, "GET", "/docs")
    assert status == 200 and b"/openapi.json" in page


# -- bad input: 4xx, nothing stored, nothing written outside the store ------------------


def _tar(members: list[tuple[tarfile.TarInfo, bytes]]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        for info, data in members:
            info.size = len(data) if info.isfile() else 0
            archive.addfile(info, io.BytesIO(data) if info.isfile() else None)
    return buffer.getvalue()


def _bundle_tar(folder: Path) -> bytes:
    members = []
    for file in sorted(p for p in folder.rglob("*") if p.is_file()):
        members.append((tarfile.TarInfo(file.relative_to(folder).as_posix()), file.read_bytes()))
    return _tar(members)


def _put(server, name, version, body, digest, extra=None):
    headers = {"X-Kappa-Digest": digest, "Content-Type": "application/x-tar", **(extra or {})}
    return call(server, "PUT", f"/api/v1/bundles/{name}/{version}", server.tokens["write"], body, headers)


def _nothing_stored(server, name, version):
    status, body = call(server, "GET", f"/api/v1/bundles?name={name}", server.tokens["read"])
    return status == 200 and version not in [b["version"] for b in body["bundles"]]


def test_bad_uploads_are_refused_and_store_nothing(gamma, iris_service, tmp_path):
    import socket

    folder = Path(iris_service.save_to_dir(str(tmp_path / "b")))
    manifest = iris_service.manifest
    name, version, digest = manifest.name, manifest.version, manifest.digest
    good = _bundle_tar(folder)
    outside = tmp_path / "escaped"

    status, body = _put(gamma, name, version, good, "sha256:" + "0" * 64)
    assert status == 400 and "digest" in body["error"]
    tampered = _bundle_tar(folder).replace(b"predict", b"predicT", 1)
    assert _put(gamma, name, version, tampered, digest)[0] == 400
    assert _put(gamma, name, "other-version", good, digest)[0] == 400  # not the version the manifest names
    for info, data in [
        (tarfile.TarInfo(f"../{outside.name}"), b"x"),
        (tarfile.TarInfo(str(outside)), b"x"),
    ]:
        status, body = _put(gamma, name, version, _tar([(info, data)]), digest)
        assert status == 400, body
    link = tarfile.TarInfo("kappa.yml")
    link.type, link.linkname = tarfile.SYMTYPE, str(outside)
    status, body = _put(gamma, name, version, _tar([(link, b"")]), digest)
    assert status == 400 and "link" in body["error"]
    for bad in ("a..b", "..", "%2e%2e", "a%2Fb"):
        assert _put(gamma, bad, version, good, digest)[0] in (400, 404)
    # a truncated upload: the body ends before its Content-Length
    port = int(gamma.url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port)) as sock:
        head = (
            f"PUT /api/v1/bundles/{name}/{version} HTTP/1.1\r\nHost: x\r\n"
            f"Authorization: Bearer {gamma.tokens['write']}\r\nX-Kappa-Digest: {digest}\r\n"
            f"Content-Length: {len(good)}\r\n\r\n"
        )
        sock.sendall(head.encode() + good[: len(good) // 2])
        sock.shutdown(socket.SHUT_WR)
        reply = sock.recv(4096)
    assert not reply or reply.split()[1].startswith(b"4")
    assert _nothing_stored(gamma, name, version)
    assert call(gamma, "GET", f"/api/v1/bundles/{name}/{version}", gamma.tokens["read"])[0] == 404
    assert not outside.exists() and not list(gamma.home.glob("gamma/uploads/*"))
    # the real bundle still goes in afterwards
    status, body = _put(gamma, name, version, good, digest)
    assert status == 201, body
    assert _put(gamma, name, version, good, digest)[0] == 409  # versions are never reused


def test_a_revoked_token_is_refused_within_the_check_window_however_often_it_is_used(tmp_path, monkeypatch):
    """A token is remembered for CHECK_SECONDS after the database granted it; using it again
    does not renew that, so a revocation reaches a busy server in time."""
    import time

    from kappa.errors import AccessDenied
    from kappa_gamma import tokens as token_module

    monkeypatch.setattr(token_module, "CHECK_SECONDS", 0.5)
    store = token_module.TokenStore(f"sqlite:///{tmp_path / 'tokens.db'}")
    token, info = store.create("read", "busy")
    assert store.check(token).scope == "read"
    granted = time.monotonic()
    assert store.revoke(info.token_id)
    with pytest.raises(AccessDenied, match="revoked"):
        while time.monotonic() - granted < 5:
            store.check(token)  # remembered for a while, then looked up again
            time.sleep(0.02)
    assert time.monotonic() - granted < 1
