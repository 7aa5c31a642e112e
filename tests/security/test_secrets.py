"""After the suite: no credential the run used is anywhere it could leak from.

Runs last (``tests/security/conftest.py`` moves it there), while every stack the session started
is still up. For each of them it searches

- every table of the database, ``request_log`` and ``logins`` included, row by row as text;
- every key and value in Redis;
- every file in the state folder, as bytes: the services' logs, the embedded Postgres' data
  files and WAL (so anything any table ever held), Redis' files, keys, models;

for every access token, refresh token and password the run sent or received (the ledger that
``tests/conftest.py``'s helpers and clients fill), and the log files also for bcrypt hashes,
in either of the formats auth writes, and for the stored hash of every user. Expected: zero hits.

A hit is reported by where it is and what kind of secret it is, never by its value: the test's
own output must not become the leak.
"""

from __future__ import annotations

import hashlib
import re
import stat
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import httpx
import redis.asyncio as redis
from modelgate_shared.db import asyncpg_dsn
from modelgate_shared.stack import Stack

from ..conftest import SECRETS, STACKS, bearer, eventually, password_login, sign_up
from .conftest import SecurityReport

# bcrypt ($2b$12$ + 53 characters) and passlib's bcrypt_sha256 ($bcrypt-sha256$v=2,t=2b,r=12$...).
BCRYPT = re.compile(rb"\$2[abxy]?\$\d\d\$[./A-Za-z0-9]{53}|\$bcrypt-sha256\$[^\s\"']{20,}")
SERVICES = ("auth", "inference", "gateway")


@dataclass(frozen=True)
class Secret:
    kind: str
    value: bytes
    origin: str  # the test that first sent or received it

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.value)


@dataclass(frozen=True)
class Hit:
    stack: str
    where: str
    kind: str
    fingerprint: str  # sha256 prefix of the secret: enough to tell hits apart, useless to an attacker
    origin: str = ""

    def __str__(self) -> str:
        source = f" (from {self.origin})" if self.origin else ""
        return f"{self.stack}: {self.kind} #{self.fingerprint}{source} in {self.where}"


def found(name: str, where: str, secrets: list[Secret], data: bytes) -> list[Hit]:
    return [Hit(name, where, s.kind, s.fingerprint, s.origin) for s in secrets if s.value in data]


def fingerprint(value: bytes) -> str:
    return hashlib.sha256(value).hexdigest()[:12]


def is_log(path: Path) -> bool:
    # The services' logs/*.log, redis/redis.log, and the embedded Postgres' postgres/log.
    return path.suffix == ".log" or path.name == "log" or path.parent.name in ("log", "logs")


def state_files(root: Path) -> Iterable[Path]:
    for path in sorted(root.rglob("*")):
        try:
            if stat.S_ISREG(path.lstat().st_mode):
                yield path
        except FileNotFoundError:  # Postgres' temporary files come and go
            continue


async def seed_the_run(client: httpx.AsyncClient) -> str:
    """Credentials of every kind through every path that handles them, so this test means
    something run alone too; returns the X-Request-ID of the last request."""
    username, password, _ = await sign_up(client)
    tokens = await password_login(client, username, password)
    access, refresh = tokens["access_token"], tokens["refresh_token"]
    assert (await client.get("/auth/users/me", headers=bearer(access))).status_code == 200
    # A token in the query string: refused, and the path is logged without its query.
    assert (await client.get("/v1/models", params={"access_token": access})).status_code == 401
    rotated = await client.post("/auth/token", data={"grant_type": "refresh_token", "refresh_token": refresh})
    assert rotated.status_code == 200, rotated.text
    # The old refresh token again (reuse: the family is revoked), then a revocation.
    await client.post("/auth/token", data={"grant_type": "refresh_token", "refresh_token": refresh})
    await client.post("/auth/revoke", data={"token": rotated.json()["refresh_token"]})
    await client.post("/auth/token", data={"grant_type": "password", "username": username, "password": f"{password}!"})
    fresh = await password_login(client, username, password)
    new_password = f"pw-{uuid.uuid4().hex}"
    changed = await client.patch(
        "/auth/users/me",
        json={"current_password": password, "password": new_password},
        headers=bearer(fresh["access_token"]),
    )
    assert changed.status_code == 200, changed.text
    # Refused sign-ups: a password below the policy, and a full name Postgres cannot store.
    await client.post("/auth/users", json={"username": f"u{uuid.uuid4().hex[:8]}", "password": "Sh0rt-pw!",
                                           "email": f"s{uuid.uuid4().hex[:8]}@example.com"})  # fmt: skip
    await client.post(
        "/auth/users",
        json={"username": f"u{uuid.uuid4().hex[:8]}", "password": f"pw-{uuid.uuid4().hex}",
              "email": f"n{uuid.uuid4().hex[:8]}@example.com", "full_name": "nul\u0000name"},
    )  # fmt: skip
    last = f"secrets-seed-{uuid.uuid4().hex[:8]}"
    await client.get("/auth/users/me", headers={**bearer(fresh["access_token"]), "X-Request-ID": last})
    return last


async def logged(stack: Stack, request_id: str) -> bool | None:
    assert stack.postgres is not None
    conn = await asyncpg.connect(asyncpg_dsn(stack.postgres.url))
    try:
        found = await conn.fetchval("SELECT count(*) FROM request_log WHERE request_id = $1", request_id)
    finally:
        await conn.close()
    return True if found else None


async def flush_request_log(stack: Stack) -> None:
    """The request log is written in batches: wait until a request made now is in it."""
    marker = f"secrets-flush-{uuid.uuid4().hex[:8]}"
    async with httpx.AsyncClient(base_url=stack.gateway_url, timeout=30) as client:
        await client.get("/v2/health/live", headers={"X-Request-ID": marker})
    await eventually(lambda: logged(stack, marker), f"request {marker} in request_log")


async def database_text(stack: Stack) -> tuple[dict[str, str], list[str]]:
    """Every table as text (one line per row), and every user's stored password hash."""
    assert stack.postgres is not None
    conn = await asyncpg.connect(asyncpg_dsn(stack.postgres.url))
    try:
        listed = await conn.fetch("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        tables = [r["tablename"] for r in listed]
        text = {}
        for table in tables:
            rows = await conn.fetch(f'SELECT t::text AS row FROM "{table}" t')  # noqa: S608 - names from pg_tables
            text[table] = "\n".join(r["row"] for r in rows)
        hashes = [r["password_hash"] for r in await conn.fetch("SELECT password_hash FROM users")]
    finally:
        await conn.close()
    return text, hashes


async def redis_text(stack: Stack) -> str:
    assert stack.redis is not None
    client = redis.from_url(stack.redis.url)
    parts: list[bytes] = []
    try:
        async for key in client.scan_iter(count=1000):
            parts.append(key)
            kind = (await client.type(key)).decode()
            if kind == "string":
                parts.append(await client.get(key) or b"")
            elif kind == "hash":
                parts.extend(b"%s=%s" % item for item in (await client.hgetall(key)).items())
            elif kind in ("set", "zset", "list"):
                members = {
                    "set": client.smembers,
                    "zset": lambda k: client.zrange(k, 0, -1),
                    "list": lambda k: client.lrange(k, 0, -1),
                }[kind](key)
                parts.extend(await members)
    finally:
        await client.aclose()
    return b"\n".join(parts).decode("latin-1")


async def search(stack: Stack, name: str, secrets: list[Secret]) -> tuple[list[Hit], dict[str, int]]:
    hits: list[Hit] = []
    searched = {"tables": 0, "table rows bytes": 0, "redis bytes": 0, "files": 0, "file bytes": 0, "log files": 0}

    tables, stored_hashes = await database_text(stack)
    assert {"request_log", "logins"} <= set(tables), sorted(tables)
    for table, text in tables.items():
        data = text.encode()
        searched["tables"] += 1
        searched["table rows bytes"] += len(data)
        hits += found(name, f"table {table}", secrets, data)

    data = (await redis_text(stack)).encode("latin-1")
    searched["redis bytes"] = len(data)
    hits += found(name, "redis", secrets, data)

    hashes = [h.encode() for h in stored_hashes]
    logs = [stack.state / "logs" / f"{service}.log" for service in SERVICES]
    assert all(log.exists() for log in logs), f"service logs missing: {[str(p) for p in logs if not p.exists()]}"
    for path in state_files(stack.state):
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            continue
        where = f"file {path.relative_to(stack.state)}"
        searched["files"] += 1
        searched["file bytes"] += len(data)
        hits += found(name, where, secrets, data)
        if is_log(path):
            searched["log files"] += 1
            hits += [Hit(name, where, "bcrypt hash", fingerprint(m.group())) for m in BCRYPT.finditer(data)]
            hits += [Hit(name, where, "stored password hash", fingerprint(h)) for h in hashes if h in data]
    return sorted(set(hits), key=str), searched


async def test_no_secret_is_stored_or_logged_anywhere(
    stack: Stack, own_ip_client: httpx.AsyncClient, report: SecurityReport
) -> None:
    last = await seed_the_run(own_ip_client)
    await eventually(lambda: logged(stack, last), f"request {last} in request_log")
    secrets = [Secret(kind, value.encode(), origin) for kind, value, origin in SECRETS.items()]
    kinds = sorted({s.kind for s in secrets})
    assert {"access token", "refresh token", "password"} <= set(kinds), kinds

    all_hits: list[Hit] = []
    for running in STACKS:
        if running.postgres is None:
            continue  # stopped already (a module-scoped stack): nothing left to search
        name = "session stack" if running is stack else f"security_stack ({running.gateway_url})"
        if running.check_alive() is None:  # else a service died: search what it left
            await flush_request_log(running)
        hits, searched = await search(running, name, secrets)
        all_hits += hits
        report.note(
            "secrets: search of databases, Redis, logs and state folders",
            f"{name}: {len(secrets)} secrets ({', '.join(kinds)}) x "
            + ", ".join(f"{v} {k}" for k, v in searched.items())
            + f": {len(hits)} hits",
        )
    report.saw("secrets: search of databases, Redis, logs and state folders", "hits", len(all_hits))
    assert not all_hits, f"{len(all_hits)} secrets found where none may be:\n" + "\n".join(map(str, all_hits))
