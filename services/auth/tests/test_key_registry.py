from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from auth_service.key_registry import record_keys, record_ring
from auth_service.keyring import KeyRing, create_key
from auth_service.models import SigningKeyRecord
from fastapi import FastAPI
from modelgate_shared.db import make_engine
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

T0 = datetime(2026, 11, 27, 3, 0, tzinfo=UTC)


@pytest.fixture
async def sessions(migrated_db: str) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    engine = make_engine(migrated_db)
    yield async_sessionmaker(engine, expire_on_commit=False)
    await engine.dispose()


async def rows(sessions: async_sessionmaker[AsyncSession]) -> dict[str, SigningKeyRecord]:
    async with sessions() as session:
        return {r.kid: r for r in (await session.scalars(select(SigningKeyRecord))).all()}


async def test_rotation_and_removal_are_recorded(keys_dir: Path, sessions: async_sessionmaker[AsyncSession]) -> None:
    ring = KeyRing(keys_dir, rescan_seconds=0)
    ring.load()
    first = ring.signing
    async with sessions() as session:
        await record_keys(session, ring.keys, first.kid, T0)
    recorded = await rows(sessions)
    assert set(recorded) == {first.kid}
    assert recorded[first.kid].signing_since == T0
    assert recorded[first.kid].public_jwk == first.public_jwk
    assert recorded[first.kid].retired_at is None

    # keys rotate: a newer file signs, the old one is still published.
    create_key(keys_dir, "ES256")
    ring.load()
    second = ring.signing
    assert second.kid != first.kid
    t1 = T0 + timedelta(hours=1)
    async with sessions() as session:
        await record_keys(session, ring.keys, second.kid, t1)
    recorded = await rows(sessions)
    assert set(recorded) == {first.kid, second.kid}
    assert recorded[first.kid].signing_since == T0  # the first time it signed, not overwritten
    assert recorded[first.kid].last_seen_at == t1
    assert recorded[second.kid].signing_since == t1
    assert recorded[second.kid].algorithm == "ES256"

    # The old file is deleted once its tokens expired: the kid is retired, not forgotten.
    first.path.unlink()
    ring.load()
    t2 = t1 + timedelta(hours=1)
    async with sessions() as session:
        await record_keys(session, ring.keys, second.kid, t2)
    recorded = await rows(sessions)
    assert recorded[first.kid].retired_at == t2
    assert recorded[second.kid].retired_at is None


async def test_a_rotated_ring_is_recorded(keys_dir: Path, sessions: async_sessionmaker[AsyncSession]) -> None:
    ring = KeyRing(keys_dir, rescan_seconds=0)
    ring.load()
    await record_ring(ring, sessions)
    create_key(keys_dir, "RS256")
    assert ring.refresh()
    signing_kid, published = await record_ring(ring, sessions)
    recorded = await rows(sessions)
    assert set(recorded) == published and len(published) == 2
    assert recorded[signing_kid].signing_since is not None


async def test_the_running_service_records_its_signing_key(
    app: FastAPI, sessions: async_sessionmaker[AsyncSession]
) -> None:
    signing_kid = app.state.auth.ring.signing.kid
    for _ in range(100):
        recorded = await rows(sessions)
        if signing_kid in recorded:
            break
        await asyncio.sleep(0.05)
    assert recorded[signing_kid].signing_since is not None
    assert recorded[signing_kid].retired_at is None
