"""Launcher failures a user can cause must say what is wrong and exit non-zero."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from modelgate_shared.backing import Provided
from modelgate_shared.stack import InvalidSettings, Stack, StackError, StackSettings, free_port, up


def test_taken_port_is_a_clear_error(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        settings = StackSettings(
            state_dir=tmp_path, gateway_port=port, auth_port=free_port(), inference_port=free_port()
        )
        with pytest.raises(StackError, match=rf"port {port} .* gateway is taken.*MODELGATE_GATEWAY_PORT"):
            Stack(settings).prepare()


def test_up_exits_non_zero_when_it_cannot_start(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        settings = StackSettings(
            state_dir=tmp_path, gateway_port=free_port(), auth_port=busy.getsockname()[1], inference_port=free_port()
        )
        assert up(settings) == 1
    assert "cannot start" in capsys.readouterr().err


def test_urls_and_issuer_follow_the_gateway_port(tmp_path: Path) -> None:
    stack = Stack(StackSettings(state_dir=tmp_path, gateway_port=18080))
    assert stack.gateway_url == "http://127.0.0.1:18080"
    assert stack.issuer == "http://127.0.0.1:18080/auth"


def test_auth_publishes_revocations_to_the_gateways_redis(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("GATEWAY_REDIS_URL", "GATEWAY_REDIS_KEY_PREFIX", "AUTH_REDIS_URL", "AUTH_REDIS_KEY_PREFIX"):
        monkeypatch.delenv(f"MODELGATE_{name}", raising=False)
    stack = Stack(StackSettings(state_dir=tmp_path))
    stack.postgres = Provided("postgresql://pg.test/modelgate", "environment")
    stack.redis = Provided("redis://redis.test:6379/0", "environment")
    env = stack.env()
    assert env["MODELGATE_AUTH_REDIS_URL"] == env["MODELGATE_GATEWAY_REDIS_URL"] == "redis://redis.test:6379/0"
    assert "MODELGATE_AUTH_REDIS_KEY_PREFIX" not in env  # both services default to the same prefix

    # The gateway's Redis or prefix set by hand: auth follows it, unless it is set apart too.
    monkeypatch.setenv("MODELGATE_GATEWAY_REDIS_URL", "redis://elsewhere.test:6379/1")
    monkeypatch.setenv("MODELGATE_GATEWAY_REDIS_KEY_PREFIX", "mine:")
    env = stack.env()
    assert env["MODELGATE_AUTH_REDIS_URL"] == "redis://elsewhere.test:6379/1"
    assert env["MODELGATE_AUTH_REDIS_KEY_PREFIX"] == "mine:"
    monkeypatch.setenv("MODELGATE_AUTH_REDIS_URL", "redis://auth-own.test:6379/2")
    assert stack.env()["MODELGATE_AUTH_REDIS_URL"] == "redis://auth-own.test:6379/2"


def _clear_backing_urls(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("DATABASE_URL", "REDIS_URL", "GATEWAY_REDIS_URL", "AUTH_REDIS_URL", "GATEWAY_RATE_LIMIT_DEFAULT"):
        monkeypatch.delenv(f"MODELGATE_{name}", raising=False)


def test_service_settings_are_checked_with_whole_names(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _clear_backing_urls(monkeypatch)
    monkeypatch.setenv("MODELGATE_GATEWAY_RATE_LIMIT_DEFAULT", "lots")
    stack = Stack(StackSettings(state_dir=tmp_path / "state"))
    with pytest.raises(InvalidSettings, match=r"MODELGATE_GATEWAY_RATE_LIMIT_DEFAULT: 'lots' is not LIMIT/PERIOD"):
        stack.check_settings()
    monkeypatch.delenv("MODELGATE_GATEWAY_RATE_LIMIT_DEFAULT")
    stack.check_settings()  # the defaults and the launcher's computed values are valid


def test_a_bad_launcher_value_is_named_as_the_launchers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _clear_backing_urls(monkeypatch)
    monkeypatch.setenv("MODELGATE_REDIS_URL", "http://redis.test")
    stack = Stack(StackSettings(state_dir=tmp_path / "state", redis_url="http://redis.test"))
    with pytest.raises(InvalidSettings) as exc:
        stack.check_settings()
    assert "MODELGATE_REDIS_URL (passed on as MODELGATE_GATEWAY_REDIS_URL): must be a redis://" in str(exc.value)


def test_up_refuses_bad_settings_before_starting_anything(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _clear_backing_urls(monkeypatch)
    monkeypatch.setenv("MODELGATE_GATEWAY_RATE_LIMIT_DEFAULT", "lots")
    assert up(StackSettings(state_dir=tmp_path / "state")) == 2
    assert "MODELGATE_GATEWAY_RATE_LIMIT_DEFAULT" in capsys.readouterr().err
    assert not (tmp_path / "state").exists()
