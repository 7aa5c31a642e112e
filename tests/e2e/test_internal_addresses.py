"""The Open Inference Protocol's server metadata through the gateway, and no internal address
in any answer (issue 13, defect 5): inference's slash redirects name the public path."""

from __future__ import annotations

from urllib.parse import urlsplit

import httpx
from modelgate_shared.stack import Stack


def _internal_addresses(stack: Stack) -> list[str]:
    return [urlsplit(stack.url(service)).netloc for service in ("auth", "inference")]


def _no_internal_address(stack: Stack, response: httpx.Response) -> None:
    for address in _internal_addresses(stack):
        for name, value in response.headers.items():
            assert address not in value, f"{name}: {value}"
        assert address not in response.text


async def test_v2_server_metadata_through_the_gateway(stack: Stack, gateway: httpx.AsyncClient) -> None:
    response = await gateway.get("/v2")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["name"] == "modelgate-inference"
    assert isinstance(body["version"], str) and isinstance(body["extensions"], list)
    _no_internal_address(stack, response)


async def test_v2_with_a_slash_redirects_to_the_public_path(stack: Stack, gateway: httpx.AsyncClient) -> None:
    redirect = await gateway.get("/v2/")
    assert redirect.status_code == 307, redirect.text
    assert redirect.headers["location"] == "/v2"
    _no_internal_address(stack, redirect)
    followed = await gateway.get("/v2/", follow_redirects=True)
    assert followed.status_code == 200
    assert followed.json()["name"] == "modelgate-inference"


async def test_slash_redirects_of_any_route_name_the_public_path(stack: Stack, gateway: httpx.AsyncClient) -> None:
    for path, public in (("/v1/models/", "/v1/models"), ("/v2/health/live/", "/v2/health/live")):
        redirect = await gateway.get(path)
        assert redirect.status_code == 307, (path, redirect.text)
        assert redirect.headers["location"] == public
        _no_internal_address(stack, redirect)
