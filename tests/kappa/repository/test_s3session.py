"""The aiobotocore session Kappa gives s3fs (its point, an upload to a frozen store that ends in
the timeouts: tests/faults/test_object_store.py)."""

from __future__ import annotations

import os

import pytest

from kappa.repository.s3session import in_this_process, s3_options

pytest.importorskip("aiobotocore")


def test_a_configured_session_or_profile_is_respected(monkeypatch):
    from fsspec.config import conf

    mine = object()
    monkeypatch.setitem(conf, "s3", {"session": mine})
    assert s3_options() == {}
    monkeypatch.setitem(conf, "s3", {"profile": "team"})
    assert s3_options()["session"].profile == "team"


def test_a_forked_child_gets_its_own_session(monkeypatch):
    from fsspec.config import conf

    monkeypatch.setitem(conf, "s3", {})
    options = {"endpoint_url": "http://127.0.0.1:1", **s3_options()}
    assert in_this_process(options) == options
    assert in_this_process({"session": object()})["session"] is not options["session"]
    read, write = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - the child
        moved = in_this_process(options)
        same = moved["session"] is options["session"] or moved["endpoint_url"] != options["endpoint_url"]
        os.write(write, b"same" if same else b"own")
        os._exit(0)
    os.close(write)
    assert os.read(read, 10) == b"own"
    os.waitpid(child, 0)
