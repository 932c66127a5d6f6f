"""The suite stopped by SIGTERM (``make test``'s trap on Ctrl-C, a CI time-out) still stops what its
fixtures started: the servers and JVM clusters of a killed pytest would outlive it."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[1]

SUITE = """
import time
from pathlib import Path

import pytest

HERE = Path(__file__).parent


@pytest.fixture(scope="session")
def server():
    yield
    (HERE / "stopped").write_text("teardown ran")


def test_waits(server):
    (HERE / "started").write_text("")
    time.sleep(120)
"""


def test_sigterm_runs_the_fixtures_teardown_even_with_sigint_ignored(tmp_path):
    (tmp_path / "test_waits.py").write_text(SUITE)
    run = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "tests.conftest",
            "-p",
            "no:cacheprovider",
            str(tmp_path),
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        # as `make test` starts its background pytest: a non-interactive shell's `&` ignores SIGINT
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN),
    )
    try:
        deadline = time.monotonic() + 60
        while not (tmp_path / "started").exists():
            assert run.poll() is None and time.monotonic() < deadline, run.communicate()[0]
            time.sleep(0.1)
        run.send_signal(signal.SIGTERM)
        output = run.communicate(timeout=30)[0]
    finally:
        run.kill()
    assert (tmp_path / "stopped").read_text() == "teardown ran", output
    assert run.returncode == 2 and "KeyboardInterrupt" in output, output
