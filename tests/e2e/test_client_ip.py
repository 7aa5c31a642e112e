"""The client address in the login history: what the gateway knows, not what a client claims.

The gateway believes X-Forwarded-For only from a trusted proxy (here ``PROXY_ADDRESS``) and
sets the header itself for auth, which believes it from the gateway. So a direct client's
own X-Forwarded-For never reaches ``logins``, and a proxied client's address does.
"""

from __future__ import annotations

import uuid

import httpx

from ..conftest import bearer, eventually, fresh_client_ip, password_login, sign_up

SPOOFED = "203.0.113.66"


async def newest_login(client: httpx.AsyncClient, access_token: str) -> dict[str, object]:
    response = await client.get("/auth/users/me/logins", params={"limit": 1}, headers=bearer(access_token))
    assert response.status_code == 200, response.text
    (row,) = response.json()["items"]
    return dict(row)


async def logged_client_ip(gateway: httpx.AsyncClient, admin_token: str, request_id: str) -> str:
    """The client address the gateway wrote in its request log for one request."""

    async def row() -> str | None:
        response = await gateway.get(
            "/admin/request-log", params={"path": "/auth/token", "limit": 1000}, headers=bearer(admin_token)
        )
        assert response.status_code == 200, response.text
        return next((r["client_ip"] for r in response.json()["items"] if r["request_id"] == request_id), None)

    return await eventually(row, f"request-log row {request_id}")


async def login(client: httpx.AsyncClient, username: str, password: str, headers: dict[str, str]) -> str:
    response = await client.post(
        "/auth/token", data={"grant_type": "password", "username": username, "password": password}, headers=headers
    )
    assert response.status_code == 200, response.text
    return str(response.json()["access_token"])


async def test_a_direct_clients_forwarded_for_is_not_believed(gateway: httpx.AsyncClient, admin_token: str) -> None:
    username, password, _ = await sign_up(gateway)
    request_id = f"e2e-xff-direct-{uuid.uuid4().hex[:8]}"
    token = await login(
        gateway,
        username,
        password,
        # Both forms a spoof can take: a single address, and a chain ending in a trusted one.
        {"X-Forwarded-For": f"{SPOOFED}, 127.0.0.1", "X-Request-ID": request_id},
    )
    row = await newest_login(gateway, token)
    assert row["success"] is True
    assert row["client_ip"] == "127.0.0.1"
    # The gateway's own record agrees: the client is the peer it saw.
    assert await logged_client_ip(gateway, admin_token, request_id) == "127.0.0.1"


async def test_a_trusted_proxys_client_is_recorded(
    proxy: httpx.AsyncClient, gateway: httpx.AsyncClient, admin_token: str
) -> None:
    username, password, _ = await sign_up(gateway)
    client_ip = fresh_client_ip()
    request_id = f"e2e-xff-proxied-{uuid.uuid4().hex[:8]}"
    token = await login(proxy, username, password, {"X-Forwarded-For": client_ip, "X-Request-ID": request_id})
    row = await newest_login(gateway, token)
    assert row["client_ip"] == client_ip
    assert await logged_client_ip(gateway, admin_token, request_id) == client_ip


async def test_a_proxied_clients_own_forwarded_for_is_not_believed(
    proxy: httpx.AsyncClient, gateway: httpx.AsyncClient
) -> None:
    """The proxy appends the address it saw to whatever the client sent: the client is the
    right-most address that is not a trusted proxy, never the client's own claim further left."""
    username, password, _ = await sign_up(gateway)
    client_ip = fresh_client_ip()
    token = await login(proxy, username, password, {"X-Forwarded-For": f"{SPOOFED}, {client_ip}"})
    assert (await newest_login(gateway, token))["client_ip"] == client_ip


async def test_refresh_grants_record_the_client_too(own_ip_client: httpx.AsyncClient, own_ip: str) -> None:
    username, password, _ = await sign_up(own_ip_client)
    session = await password_login(own_ip_client, username, password)
    refreshed = await own_ip_client.post(
        "/auth/token", data={"grant_type": "refresh_token", "refresh_token": session["refresh_token"]}
    )
    assert refreshed.status_code == 200, refreshed.text
    row = await newest_login(own_ip_client, refreshed.json()["access_token"])
    assert row["grant_type"] == "refresh_token"
    assert row["client_ip"] == own_ip
