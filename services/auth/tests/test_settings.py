from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest
from auth_service.login_history import client_ip
from auth_service.settings import AuthSettings
from pydantic import ValidationError
from starlette.requests import Request

BASE = {"MODELGATE_AUTH_DATABASE_URL": "postgresql://postgres@localhost/db", "MODELGATE_AUTH_KEYS_DIR": "/k"}


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in ("MODELGATE_ADMIN_USERNAME", "MODELGATE_ADMIN_PASSWORD", "MODELGATE_ADMIN_EMAIL"):
        monkeypatch.delenv(name, raising=False)
    for name, value in BASE.items():
        monkeypatch.setenv(name, value)
    return monkeypatch


def test_defaults_match_the_contract(env: pytest.MonkeyPatch) -> None:
    settings = AuthSettings()
    assert settings.keys_dir == Path("/k")
    assert settings.issuer == "http://127.0.0.1:8000/auth"
    assert settings.audience == "modelgate-api"
    assert settings.bcrypt_rounds == 12
    assert settings.access_token_ttl_seconds == 900
    assert settings.refresh_token_ttl_seconds == 1_209_600
    assert settings.public_jwks_file is None
    assert settings.revocation_republish_seconds == 5
    # Hashing yields to the event loops but still progresses under load (see bench/README.md).
    assert 0 < settings.bcrypt_nice < 19


@pytest.mark.parametrize("nice", ["0", "7", "19"])
def test_bcrypt_nice_is_read_from_the_environment(env: pytest.MonkeyPatch, nice: str) -> None:
    env.setenv("MODELGATE_AUTH_BCRYPT_NICE", nice)
    assert AuthSettings().bcrypt_nice == int(nice)


def test_first_admin_comes_from_unprefixed_variables(env: pytest.MonkeyPatch) -> None:
    env.setenv("MODELGATE_ADMIN_USERNAME", "root")
    env.setenv("MODELGATE_ADMIN_PASSWORD", "root password 123")
    settings = AuthSettings()
    assert settings.admin_username == "root"
    assert settings.admin_password is not None
    assert "root password" not in repr(settings)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("MODELGATE_AUTH_DATABASE_URL", "mysql://x@y/z"),
        ("MODELGATE_AUTH_BCRYPT_ROUNDS", "3"),
        ("MODELGATE_AUTH_BCRYPT_NICE", "-1"),
        ("MODELGATE_AUTH_BCRYPT_NICE", "20"),
        ("MODELGATE_AUTH_BCRYPT_MAX_PENDING", "0"),
        ("MODELGATE_AUTH_KEY_ALGORITHM", "HS256"),
        ("MODELGATE_AUTH_REVOCATION_REPUBLISH_SECONDS", "0"),
        ("MODELGATE_AUTH_TRUSTED_PROXIES", '["not-an-ip"]'),
        ("MODELGATE_ADMIN_USERNAME", "root"),  # without a password
    ],
)
def test_bad_settings_are_refused(env: pytest.MonkeyPatch, name: str, value: str) -> None:
    env.setenv(name, value)
    with pytest.raises(ValidationError):
        AuthSettings()


def request_from(peer: str, forwarded: str | None = None) -> Request:
    headers = [(b"x-forwarded-for", forwarded.encode())] if forwarded else []
    return Request({"type": "http", "client": (peer, 1234), "headers": headers})


TRUSTED = (ipaddress.ip_network("10.0.0.0/8"),)


@pytest.mark.parametrize(
    ("peer", "forwarded", "expected"),
    [
        ("10.1.2.3", "198.51.100.1, 203.0.113.5", "203.0.113.5"),
        ("192.0.2.1", "203.0.113.5", "192.0.2.1"),  # untrusted peer: header ignored
        ("10.1.2.3", "garbage", None),
        ("10.1.2.3", None, "10.1.2.3"),
    ],
)
def test_client_ip_trusts_forwarded_for_only_from_proxies(
    peer: str, forwarded: str | None, expected: str | None
) -> None:
    assert client_ip(request_from(peer, forwarded), TRUSTED) == expected


def test_first_admin_settings_are_checked_at_load(env: pytest.MonkeyPatch) -> None:
    env.setenv("MODELGATE_ADMIN_USERNAME", "Root")
    env.setenv("MODELGATE_ADMIN_PASSWORD", "short")
    with pytest.raises(ValidationError, match="at least 10"):
        AuthSettings()
    env.setenv("MODELGATE_ADMIN_PASSWORD", "long enough password")
    assert AuthSettings().admin_username == "root"


def test_empty_admin_variables_mean_no_first_admin(env: pytest.MonkeyPatch) -> None:
    # docker compose turns `${MODELGATE_ADMIN_PASSWORD:-}` into an empty string.
    env.setenv("MODELGATE_ADMIN_USERNAME", "")
    env.setenv("MODELGATE_ADMIN_PASSWORD", "")
    settings = AuthSettings()
    assert settings.admin_username is None
    assert settings.admin_password is None
