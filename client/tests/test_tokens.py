"""Token refresh across a real expiry, and waiting out a 429."""

from __future__ import annotations

import time

import httpx
import pytest
from conftest import ACCESS_TOKEN_TTL_SECONDS, ROW, THROTTLED_SCOPE, sign_up
from modelgate_client import Client, RateLimited


def test_refresh_across_an_expiry(base_url: str, user: tuple[str, str]) -> None:
    username, password = user
    # One client refreshes ahead of the expiry (margin 0: at it), the other only when the
    # gateway refuses its token (a negative margin: it believes the token good for a minute more).
    ahead = Client(base_url, username=username, password=password, refresh_margin=0)
    on_401 = Client(base_url, username=username, password=password, refresh_margin=-60)
    with ahead, on_401:
        ahead.predict("diabetes", [ROW])
        on_401.predict("diabetes", [ROW])
        assert ahead.auth is not None and on_401.auth is not None
        old_tokens = (ahead.auth.access_token, on_401.auth.access_token)
        old_refresh = (ahead.auth.refresh_token, on_401.auth.refresh_token)

        time.sleep(ACCESS_TOKEN_TTL_SECONDS + 2)
        for token in old_tokens:
            refused = httpx.get(f"{base_url}/v1/models", headers={"Authorization": f"Bearer {token}"}, timeout=30)
            assert refused.status_code == 401, "the old token should have expired"

        assert ahead.predict("diabetes", [ROW])[0]["label"] in (0, 1)
        assert on_401.predict("diabetes", [ROW])[0]["label"] in (0, 1)
        new_tokens = (ahead.auth.access_token, on_401.auth.access_token)
        new_refresh = (ahead.auth.refresh_token, on_401.auth.refresh_token)
    assert all(new != old for new, old in zip(new_tokens, old_tokens, strict=True))
    # Refreshed with the refresh token (which rotates), not a new password login... or both:
    # either way a new refresh token is held.
    assert all(new != old for new, old in zip(new_refresh, old_refresh, strict=True))


def test_a_429_is_waited_out(base_url: str) -> None:
    # Buckets are per user: each part has a user (a bucket) of its own.
    username, password = sign_up(base_url)
    # Without retries the second call at once is refused, with the server's Retry-After.
    with Client(base_url, username=username, password=password, scope=THROTTLED_SCOPE, max_retries=0) as client:
        client.models()
        with pytest.raises(RateLimited) as limited:
            client.models()
    assert limited.value.status == 429 and limited.value.request_id
    assert limited.value.retry_after is not None and limited.value.retry_after > 0

    # A wait longer than max_wait is not taken: the error comes at once.
    username, password = sign_up(base_url)
    with Client(base_url, username=username, password=password, scope=THROTTLED_SCOPE, max_wait=0.001) as client:
        client.models()
        with pytest.raises(RateLimited):
            client.models()

    # With retries, the client waits for Retry-After and every call succeeds.
    username, password = sign_up(base_url)
    with Client(base_url, username=username, password=password, scope=THROTTLED_SCOPE, max_retries=5) as client:
        for _ in range(3):
            assert client.models()
