"""The object store going away under `kappa run` (issue 21): an S3 server stopped mid-run ends
the run with one line naming the output URL; once the server is back, `--resume` completes with
every input row exactly once. A frozen store (it accepts connections and never answers) ends an
upload in the configured timeouts."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.faults.checks import doubler, doubler_input, exactly_once
from tests.servers import S3_ENV, RestartableS3, s3_server_process

pytestmark = [pytest.mark.s3, pytest.mark.slow]

KAPPA = str(Path(sys.executable).parent / "kappa")


@pytest.fixture
def store() -> Iterator[RestartableS3]:
    import boto3

    server = RestartableS3()
    try:
        server.start()
        boto3.client(
            "s3",
            endpoint_url=server.endpoint,
            region_name="us-east-1",
            aws_access_key_id=S3_ENV["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=S3_ENV["AWS_SECRET_ACCESS_KEY"],
        ).create_bucket(Bucket="kappa-faults")
        yield server
    finally:
        server.stop()


def test_a_stopped_store_is_one_line_naming_the_url_and_resume_completes(make_module, store, tmp_path):
    import fsspec

    n, batch, bad = 20_000, 500, [11, 12_345]
    bad_ids = doubler_input(tmp_path / "in.parquet", n, bad, batch)
    bundle = make_module(doubler(0.05)).Doubler().save_to_dir(str(tmp_path / "bundle"))
    prefix = f"kappa-faults/scores-{os.getpid()}-{time.monotonic_ns()}"
    url = f"s3://{prefix}"
    storage = {"endpoint_url": store.endpoint, "key": S3_ENV["AWS_ACCESS_KEY_ID"]}
    storage["secret"] = S3_ENV["AWS_SECRET_ACCESS_KEY"]
    fs = fsspec.filesystem("s3", **storage)
    env = {**os.environ, **S3_ENV, "FSSPEC_S3_ENDPOINT_URL": store.endpoint}
    args = [KAPPA, "run", bundle, "score", "--input-file", str(tmp_path / "in.parquet")]
    args += ["--output-file", url, "--batch-size", str(batch), "--id-column", "id", "--workers", "2"]

    run = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 90
    while True:
        fs.invalidate_cache()
        if len(fs.glob(f"{prefix}/part-*.parquet")) >= 4:
            break
        assert run.poll() is None and time.monotonic() < deadline, "the run never wrote four shards"
        time.sleep(0.05)
    store.stop()
    _, stderr = run.communicate(timeout=180)
    assert run.returncode == 1
    last = stderr.strip().splitlines()[-1]
    assert last.startswith(f"Error: the run into {url} stopped: Could not connect to the endpoint URL")
    assert last.endswith("then run the same command with --resume") and "Traceback" not in stderr, stderr

    store.start()
    fs.invalidate_cache()
    assert not fs.exists(f"{url}/_SUCCESS")
    written = len(fs.glob(f"{prefix}/part-*.parquet"))
    assert 4 <= written < n // batch
    finish = subprocess.run(
        [*args, "--resume", "--report", str(tmp_path / "r.json")], env=env, capture_output=True, text=True
    )
    assert finish.returncode == 0, finish.stderr
    scored, report = exactly_once(url, n, bad_ids, tmp_path / "r.json", storage)
    assert (scored["prediction"] == scored["id"].str[1:].astype(float) * 2).all()
    assert report["shards_resumed"] >= written - 2  # a shard in flight may be written again


def test_an_upload_to_a_frozen_store_ends_in_its_timeouts(monkeypatch):
    """A store that accepts connections and never answers (a frozen server, a network that drops
    packets): an upload through Kappa's file system must end in the configured read timeout and
    retries, not wait for ever for the '100 Continue' botocore asks for (aiohttp runs no timeout
    during that wait)."""
    import threading

    import boto3
    from fsspec.config import conf

    from kappa.repository.files import filesystem

    config = {"connect_timeout": 1, "read_timeout": 1, "retries": {"max_attempts": 1}}
    with s3_server_process() as (endpoint, process):
        boto3.client(
            "s3",
            endpoint_url=endpoint,
            region_name="us-east-1",
            aws_access_key_id=S3_ENV["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=S3_ENV["AWS_SECRET_ACCESS_KEY"],
        ).create_bucket(Bucket="kappa-frozen")
        for name, value in S3_ENV.items():
            monkeypatch.setenv(name, value)
        monkeypatch.setitem(conf, "s3", {"endpoint_url": endpoint, "config_kwargs": config})
        fs, path = filesystem(f"s3://kappa-frozen/scores-{os.getpid()}")
        fs.pipe(f"{path}/first", b"1")  # the store answers

        outcome: list[BaseException | None] = []

        def upload() -> None:
            try:
                fs.pipe(f"{path}/second", b"2" * 1000)
                outcome.append(None)
            except BaseException as exc:  # noqa: BLE001 - what the upload ended in is the test
                outcome.append(exc)

        process.send_signal(signal.SIGSTOP)
        started = time.monotonic()
        uploader = threading.Thread(target=upload, daemon=True)
        uploader.start()
        uploader.join(timeout=120)
        process.send_signal(signal.SIGCONT)  # lets a hung upload end, so that the thread does too
        assert outcome, "the upload still waited 120 s after the store froze"
        assert isinstance(outcome[0], Exception) and "Read timeout" in str(outcome[0]), outcome
        assert f"/kappa-frozen/scores-{os.getpid()}/second" in str(outcome[0])
        assert time.monotonic() - started < 100
        assert fs.cat(f"{path}/first") == b"1"
