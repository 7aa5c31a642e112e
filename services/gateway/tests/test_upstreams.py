"""Routing, upstream failures, streaming and header handling."""

from __future__ import annotations

import http.client
import json
from collections.abc import Callable, Iterator

import httpx
import uvicorn
from gateway_service.settings import GatewaySettings
from gateway_service.transport import UpstreamTransport
from gateway_service.upstreams import _upstream

from .conftest import log_rows
from .servers import free_port


def _routes(*entries: tuple[str, list[str]]) -> str:
    return json.dumps([{"prefix": p, "upstreams": u} for p, u in entries])


def test_refused_upstream_is_502_then_skipped_as_503(make_gateway: Callable[..., str]) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    gateway = make_gateway(
        MODELGATE_GATEWAY_ROUTES=_routes(("/v1/", [dead])), MODELGATE_GATEWAY_UPSTREAM_COOLDOWN_SECONDS="60"
    )
    first = httpx.get(f"{gateway}/v1/models")
    assert first.status_code == 502
    assert first.json()["error"] == "upstream_unreachable"
    second = httpx.get(f"{gateway}/v1/models")
    assert second.status_code == 503
    assert second.json()["error"] == "no_healthy_upstream"


def test_round_robin_skips_a_refusing_upstream(
    make_gateway: Callable[..., str], auth_upstream: str, inference_upstream: str
) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    gateway = make_gateway(
        MODELGATE_GATEWAY_ROUTES=_routes(("/v1/", [auth_upstream, dead, inference_upstream])),
        MODELGATE_GATEWAY_UPSTREAM_COOLDOWN_SECONDS="60",
    )
    with httpx.Client(base_url=gateway) as client:
        answers = [client.get("/v1/x") for _ in range(6)]
    assert all(a.status_code == 200 for a in answers)
    served = [a.json()["upstream"] for a in answers]
    assert set(served) == {"auth", "inference"}


def test_upstream_timeout_is_504(make_gateway: Callable[..., str], inference_upstream: str) -> None:
    gateway = make_gateway(
        MODELGATE_GATEWAY_ROUTES=json.dumps(
            [{"prefix": "/t/", "upstreams": [inference_upstream], "strip_prefix": True}]
        ),
        MODELGATE_GATEWAY_UPSTREAM_READ_TIMEOUT_SECONDS="0.3",
    )
    assert httpx.get(f"{gateway}/t/slow?seconds=0", timeout=10).status_code == 200
    slow = httpx.get(f"{gateway}/t/slow?seconds=3", timeout=10)
    assert slow.status_code == 504
    assert slow.json()["error"] == "upstream_timeout"


def test_declared_body_over_limit_is_413(make_gateway: Callable[..., str]) -> None:
    gateway = make_gateway(MODELGATE_GATEWAY_MAX_REQUEST_BODY_BYTES="1000")
    response = httpx.post(f"{gateway}/v1/models/diabetes/predict", content=b"x" * 1001)
    assert response.status_code == 413
    assert response.json()["error"] == "request_too_large"
    assert httpx.post(f"{gateway}/v1/models/diabetes/predict", content=b"x" * 1000).status_code == 200


def test_streamed_body_over_limit_is_413(make_gateway: Callable[..., str]) -> None:
    gateway = make_gateway(MODELGATE_GATEWAY_MAX_REQUEST_BODY_BYTES="100000")

    def chunks() -> Iterator[bytes]:  # no Content-Length: chunked transfer
        for _ in range(50):
            yield b"y" * 10_000

    response = httpx.post(f"{gateway}/v1/upload", content=chunks())
    assert response.status_code == 413
    assert response.json()["error"] == "request_too_large"


def test_large_upload_is_streamed_through(make_gateway: Callable[..., str], inference_upstream: str) -> None:
    gateway = make_gateway(
        MODELGATE_GATEWAY_ROUTES=json.dumps(
            [{"prefix": "/up/", "upstreams": [inference_upstream], "strip_prefix": True}]
        )
    )
    size = 8 * 1024 * 1024

    def chunks() -> Iterator[bytes]:
        for _ in range(size // 65536):
            yield b"z" * 65536

    response = httpx.post(f"{gateway}/up/upload", content=chunks(), timeout=60)
    assert response.status_code == 200
    assert response.json()["bytes"] == size
    # Arrived in many pieces: the gateway forwarded as it received, it did not buffer one blob.
    assert response.json()["chunks"] > 10


def test_streamed_response_arrives_whole(make_gateway: Callable[..., str], inference_upstream: str) -> None:
    gateway = make_gateway(
        MODELGATE_GATEWAY_ROUTES=json.dumps(
            [{"prefix": "/s/", "upstreams": [inference_upstream], "strip_prefix": True}]
        )
    )
    with httpx.stream("GET", f"{gateway}/s/stream?parts=50") as response:
        body = b"".join(response.iter_raw())
    assert body == b"".join(f"part{i}\n".encode() for i in range(50))


def _echo_headers(response: httpx.Response) -> dict[str, list[str]]:
    headers: dict[str, list[str]] = {}
    for key, value in response.json()["headers"]:
        headers.setdefault(key, []).append(value)
    return headers


def test_forwarded_headers_and_hop_by_hop(gateway: str) -> None:
    response = httpx.get(
        f"{gateway}/v1/echo",
        headers={
            "X-Forwarded-For": "6.6.6.6",
            "X-Forwarded-Proto": "https",
            "Connection": "x-secret-hop",
            "X-Secret-Hop": "1",
            "Proxy-Authorization": "Basic Zm9vOmJhcg==",
            "X-Kept": "yes",
        },
    )
    seen = _echo_headers(response)
    # The client is not a trusted proxy: its X-Forwarded-* are replaced, not believed.
    assert seen["x-forwarded-for"] == ["127.0.0.1"]
    assert seen["x-forwarded-proto"] == ["http"]
    assert seen["x-forwarded-host"] == [gateway.removeprefix("http://")]
    assert "x-secret-hop" not in seen and "proxy-authorization" not in seen
    assert seen["x-kept"] == ["yes"]
    # Hop-by-hop headers of the upstream's answer do not reach the client.
    assert response.headers["x-upstream"] == "inference"
    assert "x-drop-me" not in response.headers


def test_the_gateway_adds_no_headers_of_its_own(gateway: str) -> None:
    host, port = gateway.removeprefix("http://").split(":")
    # http.client sends exactly Host here: no User-Agent, Accept or Accept-Encoding.
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    conn.putrequest("GET", "/v1/echo", skip_accept_encoding=True)
    conn.endheaders()
    response = conn.getresponse()
    seen = {k for k, _ in json.loads(response.read())["headers"]}
    conn.close()
    assert seen == {"host", "x-forwarded-for", "x-forwarded-proto", "x-forwarded-host", "x-request-id"}


def test_upstream_cookies_are_relayed_but_never_replayed_to_other_requests(gateway: str) -> None:
    first = httpx.get(f"{gateway}/auth/set-cookie")
    assert first.headers["set-cookie"].startswith("session=belongs-to-one-user")
    # A different client (no cookie of its own) must not get the first one's cookie upstream.
    later = httpx.get(f"{gateway}/auth/echo")
    assert "cookie" not in _echo_headers(later)


def test_trusted_proxy_chain_is_extended_and_names_the_client(
    make_gateway: Callable[..., str], gateway_db: str
) -> None:
    gateway = make_gateway(MODELGATE_GATEWAY_TRUSTED_PROXIES='["127.0.0.1/32"]')
    response = httpx.get(f"{gateway}/v1/echo", headers={"X-Forwarded-For": "203.0.113.9", "X-Forwarded-Proto": "https"})
    seen = _echo_headers(response)
    assert seen["x-forwarded-for"] == ["203.0.113.9, 127.0.0.1"]
    assert seen["x-forwarded-proto"] == ["https"]
    from .servers import wait_until

    wait_until(lambda: len(log_rows(gateway_db)) == 1)
    assert log_rows(gateway_db)[0]["client_ip"] == "203.0.113.9"


def test_request_id_is_kept_when_well_formed_and_replaced_otherwise(gateway: str) -> None:
    good = httpx.get(f"{gateway}/v1/echo", headers={"X-Request-ID": "abc-123.x"})
    assert good.headers["x-request-id"] == "abc-123.x"
    assert _echo_headers(good)["x-request-id"] == ["abc-123.x"]

    bad = httpx.get(f"{gateway}/v1/echo", headers={"X-Request-ID": "no spaces <allowed>"})
    generated = bad.headers["x-request-id"]
    assert generated != "no spaces <allowed>" and len(generated) == 32
    assert _echo_headers(bad)["x-request-id"] == [generated]

    none = httpx.get(f"{gateway}/v1/echo")
    assert _echo_headers(none)["x-request-id"] == [none.headers["x-request-id"]]


def test_encoded_path_and_query_reach_the_upstream_untouched(gateway: str) -> None:
    response = httpx.get(f"{gateway}/auth/a%2Fb/c?q=%20x&y=1")
    body = response.json()
    assert body["raw_path"] == "/a%2Fb/c"
    assert body["query"] == "q=%20x&y=1"


def test_dot_segments_are_rejected(gateway: str) -> None:
    host, port = gateway.removeprefix("http://").split(":")
    for path in ("/v1/../admin/request-log", "/auth/./token", "/v1/models/.."):
        # http.client sends the path as written (httpx would normalise the dots away first).
        conn = http.client.HTTPConnection(host, int(port), timeout=10)
        conn.request("GET", path)
        response = conn.getresponse()
        assert response.status == 400, path
        assert json.loads(response.read())["error"] == "bad_path"
        conn.close()
    assert httpx.get(f"{gateway}/auth/.well-known/jwks.json").status_code == 200


def test_a_percent_encoded_route_prefix_is_refused(gateway: str) -> None:
    # Routing reads the decoded path; the upstream path is cut from the raw one. "/aut%68/token"
    # cut by len("/auth") left "68/token", glued to the upstream's port: a 500, or another port.
    host, port = gateway.removeprefix("http://").split(":")
    for path in ("/aut%68/token", "/%61uth/token", "/auth%2Ftoken", "/v%32", "/v%31/models"):
        conn = http.client.HTTPConnection(host, int(port), timeout=10)
        conn.request("GET", path)
        response = conn.getresponse()
        assert response.status == 400, path
        assert json.loads(response.read())["error"] == "bad_path", path
        conn.close()
    assert httpx.get(f"{gateway}/auth/a%68/token").json()["raw_path"] == "/a%68/token"


def test_idle_upstream_connections_are_given_up_before_uvicorn_closes_them() -> None:
    # uvicorn (the upstreams) closes a keep-alive connection idle for timeout_keep_alive (5 s by
    # default); the gateway must stop reusing one earlier, or its requests meet that close.
    settings = GatewaySettings.model_construct()
    upstream = _upstream("http://127.0.0.1:1", settings)
    assert isinstance(upstream.transport, UpstreamTransport)
    assert upstream.transport._pool._keepalive_expiry == settings.upstream_keepalive_seconds
    assert settings.upstream_keepalive_seconds < uvicorn.Config("app:app").timeout_keep_alive
