"""Hostile input on both sides of the registry: uploads and run reports sent to a real server,
and a hostile registry (a small HTTP server in the test) answering a real client."""

from __future__ import annotations

import json
import tarfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

import kappa
from kappa.errors import BundleIntegrityError, RegistryError, RepositoryError
from kappa.repository.archive import extract_archive
from tests.kappa.gamma.test_registry import _bundle_tar, _put, _tar, call


def test_an_extended_header_bomb_is_refused_before_it_is_read(tmp_path):
    name = tarfile.TarInfo("././@LongLink")
    name.type, name.size = tarfile.GNUTYPE_LONGNAME, 300 * 1024**2
    head = name.tobuf(format=tarfile.GNU_FORMAT)[:512]
    archive = tmp_path / "bomb.tar"
    archive.write_bytes(head + b"a" * 1024)  # declares 300 MB of name; tarfile would read it whole
    with pytest.raises(RepositoryError, match="extended header of 314572800 bytes"):
        extract_archive(archive, tmp_path / "out")
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def _report(**overrides):
    report = {"run_id": "run-hostile-0001", "bundle": "IrisClassifier:v1", "api": "predict",
              "engine": "local", "status": "succeeded", "rows_in": 1, "rows_out": 1, "rows_error": 0,
              "started_at": 1.0, "finished_at": 2.0}  # fmt: skip
    report.update(overrides)
    return report


@pytest.mark.server
def test_bad_run_reports_are_refused_and_pages_stay_up(gamma, iris_service, tmp_path):
    folder = Path(iris_service.save_to_dir(str(tmp_path / "b")))
    manifest = iris_service.manifest
    assert _put(gamma, manifest.name, manifest.version, _bundle_tar(folder), manifest.digest)[0] == 201
    tag = manifest.tag
    write = gamma.tokens["write"]

    def post(report):
        return call(gamma, "POST", "/api/v1/runs", write, json.dumps(report).encode())

    for bad in (
        {"seconds": "abc"},
        {"started_at": 1e999},
        {"rows_in": 2**70},
        {"extra": float("nan")},
        {"run_id": "run-newline-1\n"},
        {"bundle": "NoSuchService:v9"},
        {"output": "x" * 5000},
    ):
        status, body = post(_report(**{"bundle": tag, "run_id": "run-hostile-0002", **bad}))
        assert status == 400, (bad, body)
    assert call(gamma, "POST", "/api/v1/runs", write, b"[" * 200_000)[0] == 400
    assert post(_report(bundle=tag))[0] == 201
    assert post(_report(bundle=tag, rows_in=2))[0] == 201  # a re-sent report replaces its own
    other = f"{manifest.name}:not-{manifest.version}"[:60]
    assert post(_report(bundle=other))[0] in (400, 409)  # never another bundle's run
    assert call(gamma, "GET", "/api/v1/runs?limit=-1", gamma.tokens["read"])[0] == 400
    for page in ("/ui/runs", f"/ui/bundles/{manifest.name}/{manifest.version}", "/api/v1/runs"):
        assert call(gamma, "GET", page, gamma.tokens["read"])[0] == 200, page


@pytest.mark.server
def test_uploads_with_bad_names_or_manifests_store_nothing(gamma, iris_service, tmp_path):
    import yaml

    folder = Path(iris_service.save_to_dir(str(tmp_path / "b")))
    manifest = iris_service.manifest
    good = _bundle_tar(folder)
    assert _put(gamma, manifest.name + "%0A", manifest.version, good, manifest.digest)[0] == 400
    assert _put(gamma, manifest.name, manifest.version + "%0A", good, manifest.digest)[0] == 400
    # a manifest field of the wrong type: refused, and the version can still be stored afterwards
    data = yaml.safe_load((folder / "kappa.yml").read_text())
    data["created_at"] = {"not": "a string"}
    (folder / "kappa.yml").write_text(yaml.safe_dump(data))
    status, body = _put(gamma, manifest.name, manifest.version, _bundle_tar(folder), manifest.digest)
    assert status == 400 and "created_at" in body["error"]
    assert "uploads" not in body["error"]  # no server path in what a client sees
    assert _put(gamma, manifest.name, manifest.version, good, manifest.digest)[0] == 201


# -- a hostile registry answering a real client ------------------------------------------


class _Hostile(BaseHTTPRequestHandler):
    record: dict = {}
    manifest: dict = {}
    archive = b""
    redirect_to: str | None = None
    seen: list = []

    def do_GET(self):  # noqa: N802 (http.server's name)
        type(self).seen.append((self.path, self.headers.get("Authorization")))
        if self.redirect_to:
            self.send_response(302)
            self.send_header("Location", self.redirect_to + self.path)
            self.end_headers()
            return
        if self.path.endswith("/archive"):
            body, kind = self.archive, "application/x-tar"
        else:
            body, kind = (
                json.dumps({"bundle": self.record, "manifest": self.manifest}).encode(),
                "application/json",
            )
        self.send_response(200)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def hostile(monkeypatch):
    servers = []

    def start(**attrs):
        handler = type("Handler", (_Hostile,), {"seen": [], **attrs})
        server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}", handler

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def test_a_tampered_download_is_refused_and_not_cached(
    hostile, iris_service, tmp_path, monkeypatch, kappa_home
):
    folder = Path(iris_service.save_to_dir(str(tmp_path / "b")))
    manifest = iris_service.manifest
    record = {"name": manifest.name, "version": manifest.version, "created_at": "2026-01-01T00:00:00+00:00",
              "uri": "x", "digest": manifest.digest, "labels": {}}  # fmt: skip
    members = [
        (tarfile.TarInfo(p.relative_to(folder).as_posix()), p.read_bytes())
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    ]
    evil = members + [(tarfile.TarInfo("evil.py"), b"raise SystemExit('imported')")]
    changed = [
        (i, d.replace(b"predict", b"predicT")) if i.name.endswith(".py") else (i, d) for i, d in members
    ]
    for archive in (_tar(evil), _tar(changed)):
        url, _ = hostile(record=record, manifest=manifest.to_dict(), archive=archive)
        monkeypatch.setenv("KAPPA_GAMMA_URL", url)
        with pytest.raises(BundleIntegrityError):
            kappa.load(f"{manifest.name}:latest")
        cached = kappa_home / "cache" / "gamma"
        assert not [p for p in cached.rglob("kappa.yml")]  # nothing unverified is ever kept
    # the genuine bundle from the same (now honest) registry loads: no poisoned cache in the way
    url, _ = hostile(record=record, manifest=manifest.to_dict(), archive=_tar(members))
    monkeypatch.setenv("KAPPA_GAMMA_URL", url)
    assert kappa.load(f"{manifest.name}:latest").manifest.digest == manifest.digest


def test_a_redirect_never_carries_the_token_away(hostile, monkeypatch):
    thief, stolen = hostile()
    url, _ = hostile(redirect_to=thief)
    monkeypatch.setenv("KAPPA_GAMMA_URL", url)
    monkeypatch.setenv("KAPPA_GAMMA_TOKEN", "kgt_0123456789abcdef_secret")
    with pytest.raises(RegistryError, match="redirect"):
        kappa.load("IrisClassifier:latest")
    assert stolen.seen == []
