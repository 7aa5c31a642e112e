from __future__ import annotations

import httpx
from modelgate_shared.testing import TokenSigner

from .conftest import log_rows
from .servers import wait_until


def test_auth_prefix_is_stripped_and_inference_paths_pass_unchanged(gateway: str) -> None:
    with httpx.Client(base_url=gateway) as client:
        token = client.post("/auth/token", data={"username": "alice", "password": "pw"})
        assert token.status_code == 200
        assert token.json() == {"upstream": "auth", "username": "alice"}

        users = client.get("/auth/users/me")
        assert users.json()["upstream"] == "auth"
        assert users.json()["path"] == "/users/me"

        predict = client.post("/v1/models/diabetes/predict?x=1", json={"instances": []})
        assert predict.json()["upstream"] == "inference"
        assert predict.json()["path"] == "/v1/models/diabetes/predict"
        assert predict.json()["query"] == "x=1"

        v2 = client.get("/v2/health/ready")
        assert v2.json()["path"] == "/v2/health/ready"
        # The upstream's server stamps these too; the client must see each once.
        for name in ("date", "server", "x-request-id"):
            assert len(v2.headers.get_list(name)) == 1, name


def test_unknown_path_is_a_json_404(gateway: str) -> None:
    response = httpx.get(f"{gateway}/nowhere")
    assert response.status_code == 404
    assert response.headers["content-type"].startswith("application/json")


def test_every_answer_carries_one_request_id(make_gateway) -> None:  # type: ignore[no-untyped-def]
    # The proxy runs in front of FastAPI's middleware, so it sets the id on its own answers,
    # including the errors it makes itself; the gateway's own endpoints get it from middleware.
    gateway = make_gateway(MODELGATE_GATEWAY_MAX_REQUEST_BODY_BYTES="10")
    given = {"X-Request-ID": "given-1"}
    with httpx.Client(base_url=gateway, headers=given) as client:
        answers = [
            client.get("/v1/echo"),
            client.post("/v1/echo", content=b"x" * 11),  # 413, made by the proxy itself
            client.get("/healthz"),
            client.get("/nowhere"),
        ]
    assert [a.status_code for a in answers] == [200, 413, 200, 404]
    for answer in answers:
        assert answer.headers.get_list("x-request-id") == ["given-1"], answer.request.url


def test_each_proxied_request_leaves_one_row(gateway: str, gateway_db: str, signer: TokenSigner) -> None:
    sub = "0b9d6a4e-1111-4222-8333-444455556666"
    token = signer.token(sub=sub)
    with httpx.Client(base_url=gateway) as client:
        for _ in range(20):
            client.get("/v1/models", headers={"Authorization": f"Bearer {token}"})
        client.get("/healthz")  # the gateway's own routes are not logged
        client.post("/auth/token", data={"username": "bob", "password": "secret-pw"})
    wait_until(lambda: len(log_rows(gateway_db)) == 21)
    rows = log_rows(gateway_db)
    assert sum(r["user_sub"] == sub for r in rows) == 20
    login = rows[-1]
    assert (login["route"], login["path"], login["status"], login["method"]) == ("auth", "/auth/token", 200, "POST")
    assert login["user_sub"] is None
    assert login["request_bytes"] > 0 and login["response_bytes"] > 0
    assert not any("secret-pw" in str(dict(r)) or token in str(dict(r)) for r in rows)


def test_client_over_its_limit_gets_429(make_gateway) -> None:  # type: ignore[no-untyped-def]
    gateway = make_gateway(MODELGATE_GATEWAY_RATE_LIMIT_DEFAULT="3/hour")
    with httpx.Client(base_url=gateway) as client:
        statuses = [client.get("/v1/models").status_code for _ in range(5)]
        assert statuses == [200, 200, 200, 429, 429]
        limited = client.get("/v1/models")
    assert limited.json()["error"] == "rate_limited"
    assert int(limited.headers["retry-after"]) > 0
    assert limited.headers["ratelimit-remaining"] == "0"


def test_readyz_reports_dependencies(gateway: str) -> None:
    response = httpx.get(f"{gateway}/readyz")
    assert response.status_code == 200, response.text
    assert set(response.json()["checks"]) >= {"redis", "postgres"}
