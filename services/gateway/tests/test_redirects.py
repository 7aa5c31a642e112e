"""No answer through the gateway carries an upstream's internal address; ``/v2`` itself is routed."""

from __future__ import annotations

from urllib.parse import urlsplit

import httpx
import pytest

from .servers import free_port


def _redirect(gateway: str, path: str, to: str, *, absolute: bool = True) -> httpx.Response:
    return httpx.get(f"{gateway}{path}", params={"to": to, "absolute": str(absolute).lower()})


@pytest.mark.parametrize(
    ("path", "to", "public"),
    [
        # auth is behind a stripped prefix: its /token is the client's /auth/token.
        ("/auth/redirect", "/token", "/auth/token"),
        ("/v1/redirect", "/v1/models/m/predict?x=1#top", "/v1/models/m/predict?x=1#top"),
        # Another route to the same upstream.
        ("/v1/redirect", "/v2", "/v2"),
        ("/v1/redirect", "/v2/models/m", "/v2/models/m"),
    ],
)
def test_an_upstream_redirect_to_its_own_address_becomes_the_public_path(
    gateway: str, path: str, to: str, public: str
) -> None:
    response = _redirect(gateway, path, to)
    assert response.status_code == 307, response.text
    assert response.headers["location"] == public
    assert response.headers["content-location"] == public


def test_relative_redirects_are_resolved_as_the_upstream_meant_them(gateway: str) -> None:
    # Relative to auth's own /redirect, i.e. its /users/me: the client's /auth/users/me.
    assert _redirect(gateway, "/auth/redirect", "/users/me", absolute=False).headers["location"] == "/auth/users/me"
    assert _redirect(gateway, "/v1/redirect", "other", absolute=False).headers["location"] == "/v1/other"


def test_a_redirect_to_another_upstreams_address_becomes_its_public_path(gateway: str, auth_upstream: str) -> None:
    response = _redirect(gateway, "/v1/redirect", f"{auth_upstream}/token", absolute=False)
    assert response.headers["location"] == "/auth/token"


@pytest.mark.parametrize(
    "to",
    [
        "/healthz",  # inference's own, not reachable through /v1/ or /v2/ (the gateway has its own)
        "/internal/thing",
    ],
)
def test_an_internal_address_no_route_reaches_is_refused(gateway: str, to: str, inference_upstream: str) -> None:
    response = _redirect(gateway, "/v1/redirect", to)
    assert response.status_code == 502
    assert response.json()["error"] == "bad_gateway"
    assert "internal address" in response.json()["detail"]
    assert urlsplit(inference_upstream).netloc not in response.text
    assert "location" not in response.headers


def test_another_port_of_an_upstream_host_is_internal_too(gateway: str) -> None:
    response = _redirect(gateway, "/v1/redirect", f"http://127.0.0.1:{free_port()}/x", absolute=False)
    assert response.status_code == 502
    assert "location" not in response.headers


def test_a_redirect_to_another_site_is_passed_on(gateway: str) -> None:
    response = _redirect(gateway, "/v1/redirect", "https://example.org/elsewhere?q=1", absolute=False)
    assert response.status_code == 307
    assert response.headers["location"] == "https://example.org/elsewhere?q=1"


def test_the_v2_server_metadata_path_reaches_inference(gateway: str) -> None:
    """``GET /v2`` (Open Inference Protocol server metadata) is under the ``/v2/`` route."""
    response = httpx.get(f"{gateway}/v2")
    assert response.status_code == 200, response.text
    assert response.json()["upstream"] == "inference"
    assert response.json()["path"] == "/v2"


def test_a_stripped_prefix_without_its_slash_is_the_upstreams_root(gateway: str) -> None:
    response = httpx.get(f"{gateway}/auth")
    assert response.status_code == 200, response.text
    assert response.json()["upstream"] == "auth"
    assert response.json()["path"] == "/"
