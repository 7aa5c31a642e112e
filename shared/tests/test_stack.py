"""Launcher failures a user can cause must say what is wrong and exit non-zero."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from modelgate_shared.stack import Stack, StackError, StackSettings, free_port, up


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
