"""Admin API: the request log and usage, behind the ``admin`` scope."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
import pytest
from modelgate_shared.testing import TokenSigner

from .conftest import log_rows
from .servers import wait_until

ALICE = "aaaaaaaa-0000-4000-8000-000000000001"
BOB = "bbbbbbbb-0000-4000-8000-000000000002"


@pytest.fixture
def traffic(gateway: str, gateway_db: str, signer: TokenSigner) -> str:
    with httpx.Client(base_url=gateway) as client:
        for sub, n in ((ALICE, 5), (BOB, 3)):
            auth = {"Authorization": f"Bearer {signer.token(sub=sub)}"}
            for i in range(n):
                client.get(f"/v1/models/m{i}", headers=auth)
        client.get("/v2/health/live")
    wait_until(lambda: len(log_rows(gateway_db)) == 9)
    return gateway


def _admin(signer: TokenSigner) -> dict[str, str]:
    return {"Authorization": f"Bearer {signer.token(scope='admin')}"}


def test_admin_routes_need_the_admin_scope(gateway: str, signer: TokenSigner) -> None:
    for path in ("/admin/request-log", "/admin/usage"):
        assert httpx.get(f"{gateway}{path}").status_code == 401
        user = {"Authorization": f"Bearer {signer.token(scope='predict')}"}
        forbidden = httpx.get(f"{gateway}{path}", headers=user)
        assert forbidden.status_code == 403
        assert "admin" in forbidden.json()["detail"]


def test_request_log_filters_and_pages(traffic: str, signer: TokenSigner) -> None:
    with httpx.Client(base_url=traffic, headers=_admin(signer)) as client:
        alice = client.get("/admin/request-log", params={"user": ALICE}).json()
        assert len(alice["items"]) == 5 and {i["user_sub"] for i in alice["items"]} == {ALICE}
        assert alice["next_before_id"] is None

        v2 = client.get("/admin/request-log", params={"path": "/v2/"}).json()["items"]
        assert [i["path"] for i in v2] == ["/v2/health/live"]

        page1 = client.get("/admin/request-log", params={"limit": 4}).json()
        page2 = client.get("/admin/request-log", params={"limit": 4, "before_id": page1["next_before_id"]}).json()
        page3 = client.get("/admin/request-log", params={"limit": 4, "before_id": page2["next_before_id"]}).json()
        ids = [i["id"] for p in (page1, page2, page3) for i in p["items"]]
        assert len(ids) == 9 and ids == sorted(ids, reverse=True) and len(set(ids)) == 9

        future = (datetime.now(UTC) + timedelta(minutes=5)).isoformat()
        assert client.get("/admin/request-log", params={"since": future}).json()["items"] == []
        assert len(client.get("/admin/request-log", params={"until": future, "status": 200}).json()["items"]) == 9
        assert client.get("/admin/request-log", params={"status": 404}).json()["items"] == []


def test_request_log_rejects_bad_filters_with_4xx(gateway: str, signer: TokenSigner) -> None:
    with httpx.Client(base_url=gateway, headers=_admin(signer)) as client:
        for params in ({"status": "abc"}, {"limit": 0}, {"since": "yesterday"}, {"since": "2026-01-01T00:00:00"}):
            response = client.get("/admin/request-log", params=params)
            assert response.status_code == 422, params
            assert response.json()["detail"]


def test_usage_counts_per_user(traffic: str, signer: TokenSigner) -> None:
    usage = httpx.get(f"{traffic}/admin/usage", params={"window_seconds": 600}, headers=_admin(signer)).json()
    by_user = {u["user_sub"]: u for u in usage["users"]}
    assert by_user[ALICE]["requests"] == 5 and by_user[BOB]["requests"] == 3 and by_user[None]["requests"] == 1
    assert by_user[ALICE]["errors"] == 0 and by_user[ALICE]["client_errors"] == 0
    assert 0 < by_user[ALICE]["p50_ms"] <= by_user[ALICE]["p95_ms"] <= by_user[ALICE]["p99_ms"]
