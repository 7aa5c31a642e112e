"""The stack under test: started by the same launcher as ``make up``, plus the bench's user,
tokens and the request_log count."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass
from pathlib import Path

import httpx
from modelgate_shared.db import asyncpg_dsn
from modelgate_shared.stack import Stack, StackSettings, free_port
from modelgate_shared.testing import training_data_source

# High enough never to trigger in a 10 s run: the limiter still runs its Redis script per request.
NEVER_LIMIT = "100000000/second:100000000"
RATE_LIMIT_FIELDS = ("rate_limit_default", "rate_limit_login_ip", "rate_limit_login_username")
GATEWAY_PREFIX = "MODELGATE_GATEWAY_"


def rate_limit_env() -> tuple[dict[str, str], str]:
    """Env that lifts every gateway rate limit out of reach, and a note on what was set.

    The names come from the gateway's own settings class, so a renamed field is noticed
    here (a note, not a crash) instead of silently leaving a limit in place."""
    try:
        from gateway_service.settings import GatewaySettings
    except ImportError as exc:
        env = {f"{GATEWAY_PREFIX}RATE_LIMIT_DEFAULT": NEVER_LIMIT}
        return env, f"gateway settings not importable ({exc}); set {', '.join(env)} blindly"
    present = [name for name in RATE_LIMIT_FIELDS if name in GatewaySettings.model_fields]
    missing = sorted(set(RATE_LIMIT_FIELDS) - set(present))
    env = {f"{GATEWAY_PREFIX}{name.upper()}": NEVER_LIMIT for name in present}
    note = f"set {', '.join(env)} = {NEVER_LIMIT}"
    if missing:
        note += f"; gateway has no {', '.join(missing)} (a 429 would show as errors)"
    return env, note


def bench_env() -> tuple[dict[str, str], list[str]]:
    limits, note = rate_limit_env()
    env = {
        **limits,
        # The login storm is about real bcrypt cost: pin the default, whatever the caller's env says.
        "MODELGATE_AUTH_BCRYPT_ROUNDS": "12",
    }
    return env, [note]


def make_stack(state_dir: Path, extra: dict[str, str] | None = None, admin: BenchUser | None = None) -> Stack:
    """The launcher's stack with the bench's env; with ``admin``, auth creates that admin user at
    start (the launcher contract's MODELGATE_ADMIN_USERNAME/_PASSWORD)."""
    settings = StackSettings(
        state_dir=state_dir,
        gateway_port=free_port(),
        auth_port=free_port(),
        inference_port=free_port(),
        training_data=training_data_source(),
    )
    env, _ = bench_env()
    if admin is not None:
        env |= {"MODELGATE_ADMIN_USERNAME": admin.username, "MODELGATE_ADMIN_PASSWORD": admin.password}
    return Stack(settings, ephemeral=True, log_to_files=True, extra_env={**env, **(extra or {})})


@dataclass(frozen=True)
class BenchUser:
    username: str
    password: str


def new_user(prefix: str = "bench") -> BenchUser:
    """A name and password of this run only (the stack is ephemeral)."""
    return BenchUser(f"{prefix}-{uuid.uuid4().hex[:10]}", f"pw-{uuid.uuid4().hex}")


def sign_up(gateway_url: str) -> BenchUser:
    user = new_user()
    response = httpx.post(
        f"{gateway_url}/auth/users",
        json={"username": user.username, "password": user.password, "email": f"{user.username}@example.com"},
        timeout=30,
    )
    if response.status_code != 201:
        raise RuntimeError(f"sign-up failed: {response.status_code} {response.text[:500]}")
    return user


def access_token(gateway_url: str, user: BenchUser) -> str:
    """A fresh token per scenario, so none expires mid-run whatever the TTL."""
    response = httpx.post(
        f"{gateway_url}/auth/token",
        data={"grant_type": "password", "username": user.username, "password": user.password},
        timeout=30,
    )
    if response.status_code != 200:
        raise RuntimeError(f"login failed: {response.status_code} {response.text[:500]}")
    return str(response.json()["access_token"])


def request_log_rows(database_url: str) -> int:
    async def count() -> int:
        import asyncpg

        conn = await asyncpg.connect(asyncpg_dsn(database_url))
        try:
            return int(await conn.fetchval("SELECT count(*) FROM request_log"))
        finally:
            await conn.close()

    return asyncio.run(count())
