"""The backing services are real servers: these talk to them over real connections."""

from __future__ import annotations

import asyncpg
import pytest
import redis
from modelgate_shared.db import async_url, asyncpg_dsn


async def test_database_fixture_is_a_real_postgres(database_url: str) -> None:
    conn = await asyncpg.connect(asyncpg_dsn(database_url))
    try:
        await conn.execute("CREATE TABLE t (x int)")
        await conn.execute("INSERT INTO t VALUES (41)")
        assert await conn.fetchval("SELECT x + 1 FROM t") == 42
    finally:
        await conn.close()


def test_redis_fixture_is_a_real_redis(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    assert client.ping()
    assert client.eval("return redis.call('INCRBY', KEYS[1], 5)", 1, "shared-test-counter") == 5


def test_async_url_normalises_drivers() -> None:
    assert async_url("postgres://u:p@h:5/db") == "postgresql+asyncpg://u:p@h:5/db"
    # pgserver's unix-socket form survives the rewrite.
    assert (
        async_url("postgresql://postgres:@/postgres?host=/tmp/x")
        == "postgresql+asyncpg://postgres:@/postgres?host=%2Ftmp%2Fx"
    )
    with pytest.raises(ValueError, match="must be PostgreSQL"):
        async_url("mysql://u@h/db")
