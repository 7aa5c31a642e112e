"""The revocation keys and values auth writes and the gateway reads (one definition, both sides)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
import redis
from modelgate_shared.revocation import (
    KEEP_LATEST_LUA,
    MAX_LEEWAY_SECONDS,
    decode,
    encode,
    is_revoked,
    key_ttl_ms,
    not_before,
    session_key,
    subject_key,
)


def test_keys_live_under_the_gateways_prefix() -> None:
    assert subject_key("modelgate:gw:", "u-1") == "modelgate:gw:revoked:sub:u-1"
    assert session_key("modelgate:gw:", "s-1") == "modelgate:gw:revoked:sid:s-1"


def test_a_revocation_covers_every_token_of_its_second() -> None:
    # iat has whole seconds: a token issued at 99.2 or 100.0 (iat 99 or 100) precedes a revocation at 100.5.
    nb = not_before(100.5)
    assert nb == 101
    assert is_revoked(99, nb) and is_revoked(100, nb)
    assert not is_revoked(101, nb)
    assert not_before(100.0) == 101
    assert is_revoked(100, None, nb) and not is_revoked(100, None, None)


def test_values_round_trip_and_garbage_is_no_revocation() -> None:
    assert decode(encode(1_700_000_000)) == 1_700_000_000
    assert decode(encode(1_700_000_000).encode()) == 1_700_000_000
    assert decode(None) is None and decode(b"soon") is None


def test_keys_outlive_every_token_they_refuse() -> None:
    assert key_ttl_ms(900) == (900 + MAX_LEEWAY_SECONDS + 1) * 1000


@pytest.fixture
def store(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


def test_a_write_keeps_the_later_time_and_the_longer_life(store: redis.Redis) -> None:
    key, other = f"t{uuid.uuid4().hex}", f"t{uuid.uuid4().hex}"
    keep_latest = store.register_script(KEEP_LATEST_LUA)
    keep_latest(keys=[key, other], args=[encode(200), 60_000])
    assert decode(store.get(key)) == decode(store.get(other)) == 200
    assert 59_000 < store.pttl(key) <= 60_000

    keep_latest(keys=[key], args=[encode(150), 120_000])  # an older revocation, arriving late
    assert decode(store.get(key)) == 200
    assert store.pttl(key) > 60_000
    keep_latest(keys=[key], args=[encode(250), 1_000])  # a newer one: its time, the longer life kept
    assert decode(store.get(key)) == 250 and store.pttl(key) > 60_000
    store.delete(key, other)
