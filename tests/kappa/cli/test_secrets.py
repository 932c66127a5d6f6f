"""Credentials never reach a message or a log line; config files are private."""

from __future__ import annotations

import io
import logging
import os
import stat

from click.testing import CliRunner

from kappa.cli.main import cli

SECRET = "hunter2-s3cr3t"
DB_URL = f"postgresql+psycopg://kappa:{SECRET}@127.0.0.1:1/kappa"


def test_database_passwords_are_masked_in_every_error(tmp_path, monkeypatch):
    monkeypatch.setenv("KAPPA_DB_RECONNECT_SECONDS", "1")  # each call tries again for a second, then fails
    runner = CliRunner()
    invocations = [
        ["--db-url", DB_URL, "list"],
        ["--db-url", DB_URL, "get", "Iris"],
        ["--db-url", DB_URL, "run", "Iris:latest", "predict", "--input", "[[1]]"],
        ["--db-url", DB_URL, "info"],
    ]
    for args in invocations:
        result = runner.invoke(cli, args)
        assert SECRET not in result.output, (args, result.output)
        assert SECRET not in repr(result.exception), args
    failed = runner.invoke(cli, ["--db-url", DB_URL, "list"])
    assert failed.exit_code == 1 and "kappa:***@127.0.0.1" in failed.output


def test_log_lines_are_masked():
    from kappa.redact import redact_logs

    stream = io.StringIO()
    logger = logging.getLogger("kappa.test.redaction")
    logger.propagate = False
    handler = logging.StreamHandler(stream)
    logger.addHandler(handler)
    try:
        redact_logs(logger)
        logger.warning("cannot reach %s (attempt %d)", DB_URL, 3)
        logger.warning("s3://key:%s@bucket/prefix", SECRET)
    finally:
        logger.removeHandler(handler)
    text = stream.getvalue()
    assert SECRET not in text
    assert "postgresql+psycopg://kappa:***@127.0.0.1:1/kappa (attempt 3)" in text


def test_the_user_config_is_private_whatever_the_umask(kappa_home):
    old = os.umask(0)
    try:
        result = CliRunner().invoke(cli, ["config", "set", f"repository.db_url={DB_URL}"])
    finally:
        os.umask(old)
    assert result.exit_code == 0, result.output
    mode = stat.S_IMODE((kappa_home / "config.yaml").stat().st_mode)
    assert mode == 0o600, oct(mode)
    shown = CliRunner().invoke(cli, ["config", "get"])
    assert SECRET not in shown.output and "***" in shown.output


def test_passwords_that_no_pattern_can_delimit_are_masked_too():
    from kappa.redact import redact, register_secret

    assert redact("postgresql://u:pa/ss@db/x") == "postgresql://u:***@db/x"
    assert redact("postgresql://u:p@ss@db/x") == "postgresql://u:***@db/x"
    assert redact("host=db password=hunter22 user=u") == "host=db password=*** user=u"
    register_secret("with space!")
    assert "with space!" not in redact("connect postgresql://u:with space!@db failed")
