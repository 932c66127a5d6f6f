"""The aiobotocore session Kappa gives s3fs (its point, an upload to a frozen store that ends in
the timeouts: tests/faults/test_object_store.py)."""

from __future__ import annotations

import asyncio
import io
import os
import pickle

import pytest

from kappa.repository.s3session import in_this_process, s3_options

pytest.importorskip("aiobotocore")


@pytest.fixture
def no_s3_config(monkeypatch):
    from fsspec.config import conf

    monkeypatch.setitem(conf, "s3", {})


def _headers_of_an_upload(session) -> dict[str, str]:
    """The headers of a PutObject after every before-call handler of ``session`` ran."""
    params = {"headers": {}, "body": io.BytesIO(b"x"), "url_path": "/b/k", "query_string": {}}

    async def call() -> None:
        model = (await session.get_service_model("s3")).operation_model("PutObject")
        emitter = session.get_component("event_emitter")
        await emitter.emit("before-call.s3.PutObject", model=model, params=params, request_signer=None)

    asyncio.run(call())
    return params["headers"]


def test_an_upload_does_not_ask_for_100_continue(no_s3_config):
    from aiobotocore.session import AioSession

    assert _headers_of_an_upload(AioSession()).get("Expect") == "100-continue"  # botocore's default
    session = s3_options()["session"]
    assert s3_options()["session"] is session  # one per process
    assert "Expect" not in _headers_of_an_upload(session)


def test_a_pickled_file_system_carries_no_credentials(no_s3_config, monkeypatch):
    from kappa.repository.files import filesystem

    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-for-the-workers")
    fs, _ = filesystem("s3://bucket/prefix")
    shipped = pickle.dumps(fs)
    assert b"not-for-the-workers" not in shipped and len(shipped) < 1000
    assert pickle.loads(shipped).storage_options["session"] is fs.storage_options["session"]


def test_a_configured_session_or_profile_is_respected(monkeypatch):
    from fsspec.config import conf

    mine = object()
    monkeypatch.setitem(conf, "s3", {"session": mine})
    assert s3_options() == {}
    monkeypatch.setitem(conf, "s3", {"profile": "team"})
    assert s3_options()["session"].profile == "team"


def test_a_forked_child_gets_its_own_session(no_s3_config):
    options = {"endpoint_url": "http://127.0.0.1:1", **s3_options()}
    assert in_this_process(options) == options
    theirs = {"session": object()}
    assert in_this_process(theirs) is theirs
    read, write = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - the child
        moved = in_this_process(options)
        own = moved["session"] is not options["session"] and moved["endpoint_url"] == options["endpoint_url"]
        os.write(write, b"own" if own else b"same")
        os._exit(0)
    os.close(write)
    assert os.read(read, 10) == b"own"
    os.waitpid(child, 0)


@pytest.mark.parametrize("url", ["s3://bucket/key", "s3a://bucket/key", "simplecache::s3://bucket/key"])
def test_every_s3_layer_of_a_url_gets_the_session(no_s3_config, url):
    """Also inside a chained URL: a cache over S3 uploads and downloads through Kappa's session."""
    from kappa.repository.files import filesystem

    fs, path = filesystem(url)
    assert path == "bucket/key"
    s3 = getattr(fs, "fs", fs)  # a caching file system holds the S3 one
    assert s3.session is s3_options()["session"]
    assert filesystem("memory://x")[0].storage_options == {}
