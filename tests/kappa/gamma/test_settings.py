"""Pointing a client at the registry: settings, their precedence, and clear errors."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from kappa.cli.main import cli
from kappa.errors import ConfigError
from kappa.settings import KappaSettings


def test_the_documented_url_form_and_precedence(monkeypatch):
    runner = CliRunner()
    assert runner.invoke(cli, ["config", "set", "gamma_service.url=0.0.0.0:50051"]).exit_code == 0
    assert KappaSettings.load().gamma_url == "http://0.0.0.0:50051"  # host:port, as the docs write it
    monkeypatch.setenv("KAPPA_GAMMA_URL", "https://registry.example:8443/")
    assert KappaSettings.load().gamma_url == "http://0.0.0.0:50051"  # config set wins over the environment
    runner.invoke(cli, ["config", "unset", "gamma_service.url"])
    assert KappaSettings.load().gamma_url == "https://registry.example:8443"
    for bad in ("ftp://x:1", "http://", "http:///path"):
        with pytest.raises(ConfigError, match="gamma_service.url must be"):
            KappaSettings.load(overrides={"gamma_service.url": bad})


def test_the_token_is_never_printed():
    runner = CliRunner()
    runner.invoke(cli, ["config", "set", "gamma_service.token=kgt_abc_supersecretvalue"])
    shown = runner.invoke(cli, ["config", "get", "-o", "json"])
    assert shown.exit_code == 0 and "supersecretvalue" not in shown.output and "****" in shown.output


def test_an_unreachable_registry_is_one_clear_line():
    result = CliRunner().invoke(cli, ["--gamma-url", "http://127.0.0.1:9", "list"])
    assert result.exit_code == 1
    assert "cannot reach the registry at http://127.0.0.1:9" in result.output
    assert "gamma-service-start" in result.output and "Traceback" not in result.output
