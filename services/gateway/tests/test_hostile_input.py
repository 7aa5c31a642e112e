"""Hostile input at the gateway: the admin filters are bounded to what their columns hold
(a 422 naming the parameter, never a 500), and an unexpected failure is a JSON 500 whose log
line carries no request data."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest
from modelgate_shared.testing import TokenSigner

from .conftest import log_rows
from .servers import wait_until

OUT_OF_RANGE: dict[str, list[str]] = {
    "before_id": [str(2**63), str(10**400), "9" * 5000, "0", "-1", "1.5"],
    "limit": [str(2**63), str(10**400), "0"],
    "status": [str(2**63), str(10**400), "99", "600"],
    "user": ["a\x00b", "a\x1bb", "a\nb", "\u202e", "x" * 10_000],
    "path": ["/v1/\x00", "/v1/\x7f", "/v1/\u2028", "/" * 10_000],
    # Python has no UTC datetime for these, which the driver would convert to.
    "since": ["9999-12-31T23:00:00-05:00", "0001-01-01T00:00:00+05:00", "99999-01-01T00:00:00Z"],
    "until": ["9999-12-31T23:00:00-05:00", "2026-01-01T00:00:00"],
}


def _admin(signer: TokenSigner) -> dict[str, str]:
    return {"Authorization": f"Bearer {signer.token(scope='admin')}"}


def test_request_log_filters_are_bounded(gateway: str, signer: TokenSigner) -> None:
    with httpx.Client(base_url=gateway, headers=_admin(signer)) as client:
        for name, values in OUT_OF_RANGE.items():
            for value in values:
                response = client.get("/admin/request-log", params={name: value})
                assert response.status_code == 422, (name, value[:40], response.text[:300])
                detail = response.json()["detail"]
                named = name in detail if isinstance(detail, str) else detail[0]["loc"] == ["query", name]
                assert named, (name, detail)
                assert len(response.content) < 5_000
        # Larger than the HTTP server reads as a request line: refused before the app sees it.
        too_long = client.get("/admin/request-log", params={"path": "a" * 60_000})
        assert 400 <= too_long.status_code < 500
        for params in ({"before_id": 2**63 - 1}, {"path": "/v1/%_\\"}, {"user": "é"}, {"since": "9999-12-31T00:00Z"}):
            assert client.get("/admin/request-log", params=params).status_code == 200, params


def test_usage_window_is_bounded(gateway: str, signer: TokenSigner) -> None:
    with httpx.Client(base_url=gateway, headers=_admin(signer)) as client:
        for value in (str(2**63), str(10**400), "0"):
            response = client.get("/admin/usage", params={"window_seconds": value})
            assert response.status_code == 422
            assert response.json()["detail"][0]["loc"] == ["query", "window_seconds"]


def test_a_nul_in_a_proxied_path_does_not_stop_the_request_log(gateway: str, gateway_db: str) -> None:
    # The path is stored as it came; Postgres text cannot hold NUL, and one such row used to
    # fail its whole COPY batch, over and over.
    with httpx.Client(base_url=gateway) as client:
        client.get("/v1/models/a%00b")
        client.get("/v1/models/after")
    wait_until(lambda: len(log_rows(gateway_db)) == 2)
    assert [r["path"] for r in log_rows(gateway_db)] == ["/v1/models/a\ufffdb", "/v1/models/after"]


@pytest.mark.parametrize("where", ["proxy", "own route"])
def test_an_unexpected_failure_is_a_json_500_logged_without_its_message(
    make_gateway: Callable[..., str],
    signer: TokenSigner,
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
    where: str,
) -> None:
    secret = "user-supplied-SECRET"

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise ValueError(f"failed on {args!r}")  # a message quoting the input, as libraries do

    if where == "proxy":
        monkeypatch.setattr("gateway_service.proxy.match_route", broken)
        path, template = f"/v1/models/{secret}", "(no route matched)"
    else:
        monkeypatch.setattr("gateway_service.routes.admin.log_query", broken)
        path, template = f"/admin/request-log?path=/{secret}", "/admin/request-log"
    gateway = make_gateway()
    response = httpx.get(f"{gateway}{path}", headers={**_admin(signer), "X-Request-ID": "req-500"})
    assert response.status_code == 500
    assert response.json() == {"error": "internal_error", "detail": "internal error", "request_id": "req-500"}
    assert response.headers.get_list("x-request-id") == ["req-500"]
    logged = "".join(capfd.readouterr())
    assert "ValueError" in logged and f"GET {template}" in logged and "req-500" in logged
    assert secret not in logged
