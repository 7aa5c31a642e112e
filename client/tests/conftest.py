"""The client's tests run against the real stack, started by the launcher ``make up`` and the
e2e suite use, with settings that make an expiry and a 429 reachable in a test:

- access tokens live 30 s (auth's minimum) and the gateway and inference allow no leeway, so a
  token really is refused 30 s after it was issued;
- a token holding only ``models:read`` gets one request a second (burst 1), so a second call at
  once is a 429; tokens that also hold ``predict`` keep a generous policy (the most generous
  matching scope override wins), and so do the admin's (no override: the default);
- the login buckets are wide: this suite logs in from 127.0.0.1 many times.
"""

from __future__ import annotations

import io
import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from modelgate_client import cli, config
from modelgate_shared.stack import Stack, running_stack
from modelgate_shared.testing import training_data_source

ADMIN_USERNAME = "client-admin"
ADMIN_PASSWORD = f"admin-{uuid.uuid4().hex}"
ACCESS_TOKEN_TTL_SECONDS = 30
THROTTLED_SCOPE = "models:read"
FEATURES = ("preg", "plas", "pres", "skin", "test", "mass", "pedi", "age")
ROW = {"preg": 6, "plas": 148, "pres": 72, "skin": 35, "test": 0, "mass": 33.6, "pedi": 0.627, "age": 50}


@pytest.fixture(scope="session")
def stack() -> Iterator[Stack]:
    extra_env = {
        "MODELGATE_AUTH_BCRYPT_ROUNDS": "4",
        "MODELGATE_ADMIN_USERNAME": ADMIN_USERNAME,
        "MODELGATE_ADMIN_PASSWORD": ADMIN_PASSWORD,
        "MODELGATE_AUTH_ACCESS_TOKEN_TTL_SECONDS": str(ACCESS_TOKEN_TTL_SECONDS),
        "MODELGATE_GATEWAY_TOKEN_LEEWAY_SECONDS": "0",
        "MODELGATE_INFERENCE_TOKEN_LEEWAY_SECONDS": "0",
        "MODELGATE_GATEWAY_RATE_LIMIT_OVERRIDES": json.dumps(
            {f"scope:{THROTTLED_SCOPE}": "60/minute:1", "scope:predict": "6000/minute:1000"}
        ),
        "MODELGATE_GATEWAY_RATE_LIMIT_LOGIN_IP": "6000/minute:1000",
        "MODELGATE_GATEWAY_RATE_LIMIT_LOGIN_USERNAME": "6000/minute:1000",
        "MODELGATE_GATEWAY_LOG_FLUSH_INTERVAL_SECONDS": "0.1",
    }
    with running_stack(training_data=training_data_source(), extra_env=extra_env) as running:
        yield running


@pytest.fixture(scope="session")
def base_url(stack: Stack) -> str:
    return stack.gateway_url


def sign_up(base_url: str) -> tuple[str, str]:
    """A new user (default scopes): (username, password)."""
    username = f"user-{uuid.uuid4().hex[:10]}"
    password = f"pw-{uuid.uuid4().hex}"
    response = httpx.post(
        f"{base_url}/auth/users",
        json={"username": username, "password": password, "email": f"{username}@example.com"},
        timeout=30,
    )
    assert response.status_code == 201, response.text
    return username, password


@pytest.fixture
def user(base_url: str) -> tuple[str, str]:
    return sign_up(base_url)


@pytest.fixture
def config_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A CLI config folder of the test's own, and no service account in the environment."""
    folder = tmp_path / "config" / "modelgate"
    monkeypatch.setenv(config.CONFIG_DIR_ENV, str(folder))
    monkeypatch.delenv(cli.CLIENT_ID_ENV, raising=False)
    monkeypatch.delenv(cli.CLIENT_SECRET_ENV, raising=False)
    return folder


def cli_login(monkeypatch: pytest.MonkeyPatch, base_url: str, username: str, password: str, *extra: str) -> int:
    monkeypatch.setattr("sys.stdin", io.StringIO(password + "\n"))
    return cli.main(["login", "--base-url", base_url, "--username", username, "--password-stdin", *extra])


@pytest.fixture(scope="session")
def patients_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The training CSV's feature columns with a header row (the file has none)."""
    source = Path(training_data_source())
    lines = [",".join(line.split(",")[: len(FEATURES)]) for line in source.read_text().splitlines() if line]
    path = tmp_path_factory.mktemp("data") / "patients.csv"
    path.write_text(",".join(FEATURES) + "\n" + "\n".join(lines) + "\n")
    return path
