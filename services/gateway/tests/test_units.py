"""Pure logic: policy parsing and choice, rate-limit buckets, header handling, route matching, OpenAPI merging."""

from __future__ import annotations

from ipaddress import ip_network

import pytest
from gateway_service.forwarding import InternalAddress, client_ip, public_url, response_headers, upstream_headers
from gateway_service.openapi import merge_openapi
from gateway_service.policies import (
    Bucket,
    PolicySet,
    identity_buckets,
    identity_policy,
    own_buckets,
    parse_policy,
)
from gateway_service.upstreams import Route, Upstream, match_route

TRUSTED = [ip_network("10.0.0.0/8")]


@pytest.mark.parametrize(
    ("text", "limit", "period", "burst"),
    [
        ("600/minute", 600, 60, 600),
        ("600/minute:100", 600, 60, 100),
        ("10/5min:3", 10, 300, 3),
        ("5/30", 5, 30, 5),
        (" 2 / hour ", 2, 3600, 2),
        ("1/day", 1, 86400, 1),
    ],
)
def test_parse_policy(text: str, limit: int, period: float, burst: int) -> None:
    policy = parse_policy(text, "p")
    assert (policy.limit, policy.period, policy.burst) == (limit, period, burst)


@pytest.mark.parametrize("text", ["", "600", "600/fortnight", "0/minute", "10/minute:0", "ten/minute", "5/0"])
def test_parse_policy_rejects_nonsense_naming_the_setting(text: str) -> None:
    with pytest.raises(ValueError, match="RATE_X"):
        parse_policy(text, "RATE_X")


def test_identity_policy_prefers_user_then_most_generous_scope() -> None:
    default = parse_policy("10/minute", "default")
    overrides = {
        "user:u1": parse_policy("1/minute", "user:u1"),
        "scope:admin": parse_policy("100/minute", "scope:admin"),
        "scope:predict": parse_policy("50/minute", "scope:predict"),
    }
    assert identity_policy(default, overrides, "u1", frozenset({"admin"})).name == "user:u1"
    assert identity_policy(default, overrides, "u2", frozenset({"predict", "admin"})).name == "scope:admin"
    assert identity_policy(default, overrides, "u2", frozenset({"models:read"})).name == "default"
    assert identity_policy(default, overrides, None, frozenset()).name == "default"


POLICIES = PolicySet(
    key_prefix="gw:",
    default=parse_policy("10/minute", "default"),
    login_ip=parse_policy("5/minute", "login_ip"),
    login_username=parse_policy("2/minute", "login_username"),
    overrides={"scope:admin": parse_policy("100/minute", "scope:admin")},
    own=parse_policy("20/minute", "own"),
)


def test_identity_buckets_key_a_user_by_sub_and_anyone_else_by_ip() -> None:
    admin = POLICIES.overrides["scope:admin"]
    assert identity_buckets(POLICIES, "u1", frozenset(), "1.2.3.4") == [Bucket("gw:id:user:u1", POLICIES.default)]
    assert identity_buckets(POLICIES, "u1", frozenset({"admin"}), "1.2.3.4") == [Bucket("gw:id:user:u1", admin)]
    # Without a verified sub, scopes mean nothing: the client is its address.
    assert identity_buckets(POLICIES, None, frozenset({"admin"}), "1.2.3.4") == [
        Bucket("gw:id:ip:1.2.3.4", POLICIES.default)
    ]


def test_own_buckets_are_keyed_like_identity_buckets_but_apart_and_without_overrides() -> None:
    assert own_buckets(POLICIES, "u1", "1.2.3.4") == [Bucket("gw:own:user:u1", POLICIES.own)]
    assert own_buckets(POLICIES, None, "1.2.3.4") == [Bucket("gw:own:ip:1.2.3.4", POLICIES.own)]


def test_client_ip_believes_forwarded_for_only_from_trusted_peers() -> None:
    headers = [(b"x-forwarded-for", b"1.2.3.4, 10.0.0.7")]
    assert client_ip("8.8.8.8", headers, TRUSTED) == "8.8.8.8"
    assert client_ip("10.0.0.1", headers, TRUSTED) == "1.2.3.4"
    assert client_ip("10.0.0.1", [(b"x-forwarded-for", b"not-an-ip")], TRUSTED) == "10.0.0.1"
    assert client_ip("10.0.0.1", [], TRUSTED) == "10.0.0.1"
    assert client_ip("8.8.8.8", headers, []) == "8.8.8.8"


def test_upstream_headers_strip_hop_by_hop_and_set_forwarding() -> None:
    headers = [
        (b"host", b"api.example"),
        (b"connection", b"keep-alive, x-hop"),
        (b"x-hop", b"1"),
        (b"transfer-encoding", b"chunked"),
        (b"authorization", b"Bearer t"),
        (b"x-forwarded-for", b"1.1.1.1"),
        (b"x-request-id", b"client-value"),
    ]
    out = dict(upstream_headers(headers, peer="9.9.9.9", scheme="https", request_id="rid", trusted=TRUSTED))
    assert out == {
        b"authorization": b"Bearer t",
        b"x-forwarded-for": b"9.9.9.9",
        b"x-forwarded-proto": b"https",
        b"x-forwarded-host": b"api.example",
        b"x-request-id": b"rid",
    }
    trusted = dict(upstream_headers(headers, peer="10.1.1.1", scheme="http", request_id="r", trusted=TRUSTED))
    assert trusted[b"x-forwarded-for"] == b"1.1.1.1, 10.1.1.1"


def test_response_headers_drop_hop_by_hop() -> None:
    raw = [(b"Content-Type", b"x"), (b"Connection", b"close, X-A"), (b"X-A", b"1"), (b"Keep-Alive", b"5")]
    assert response_headers(raw) == [(b"content-type", b"x")]


def test_response_headers_leave_date_and_server_to_the_gateway() -> None:
    raw = [(b"date", b"Fri, 27 Nov 2026 02:39:11 GMT"), (b"server", b"uvicorn"), (b"content-length", b"2")]
    assert response_headers(raw) == [(b"content-length", b"2")]


def _route(prefix: str, strip: bool = False, name: str = "r") -> Route:
    return Route(name=name, prefix=prefix, strip_prefix=strip, upstreams=[])


def test_match_route_takes_the_longest_prefix() -> None:
    routes = [_route("/v1/"), _route("/v1/admin/", name="admin")]
    assert match_route(routes, "/v1/admin/x").name == "admin"  # type: ignore[union-attr]
    assert match_route(routes, "/v1/models").name == "r"  # type: ignore[union-attr]
    # The prefix without its slash is the route's too (GET /v2 is V2 server metadata); nothing else is.
    assert match_route(routes, "/v1").name == "r"  # type: ignore[union-attr]
    assert match_route(routes, "/v1x") is None
    assert match_route(routes, "/v") is None
    assert _route("/auth/", strip=True).upstream_path(b"/auth/token") == b"/token"
    assert _route("/auth/", strip=True).upstream_path(b"/auth") == b"/"
    assert _route("/v1/").upstream_path(b"/v1/models") == b"/v1/models"
    for raw in (b"/aut%68/token", b"/auth%2Ftoken", b"/authx"):
        assert _route("/auth/", strip=True).upstream_path(raw) is None, raw
    assert _route("/v1/").upstream_path(b"/v%31/models") is None


def _routed(prefix: str, url: str, strip: bool = False) -> Route:
    upstream = Upstream(url, client=None, transport=None, extensions={})  # type: ignore[arg-type]
    return Route(name=prefix.strip("/"), prefix=prefix, strip_prefix=strip, upstreams=[upstream])


PUBLIC_ROUTES = [
    _routed("/auth/", "http://auth.internal:8001", strip=True),
    _routed("/v1/", "http://inference.internal:8002"),
    _routed("/v2/", "http://inference.internal:8002"),
]


@pytest.mark.parametrize(
    ("location", "public"),
    [
        ("http://inference.internal:8002/v2", "/v2"),
        # Behind a TLS proxy an upstream may build https URLs from X-Forwarded-Proto.
        ("https://inference.internal:8002/v1/models?x=1", "/v1/models?x=1"),
        ("http://AUTH.internal:8001/users/me#top", "/auth/users/me#top"),
        ("http://auth.internal:8001", "/auth/"),
        ("/v2/models/m", "/v2/models/m"),
        ("?page=2", "/v1/redirect?page=2"),
        ("https://example.org/x", "https://example.org/x"),
        ("//example.org/x", "//example.org/x"),
    ],
)
def test_public_url(location: str, public: str) -> None:
    assert public_url(location, "http://inference.internal:8002/v1/redirect", PUBLIC_ROUTES) == public


@pytest.mark.parametrize(
    "location",
    [
        "http://inference.internal:8002/healthz",  # no route reaches it
        "http://inference.internal:9999/v1/models",  # another port of an upstream host
        "http://inference.internal/v1/models",
        "http://inference.internal:99999/v1/models",  # not a port at all
        "http://[::1/v1",  # not a URL
    ],
)
def test_public_url_refuses_internal_addresses_no_route_reaches(location: str) -> None:
    with pytest.raises(InternalAddress):
        public_url(location, "http://inference.internal:8002/v1/redirect", PUBLIC_ROUTES)


def test_merge_openapi_prefixes_paths_and_renames_clashing_schemas() -> None:
    base = {"openapi": "3.1.0", "paths": {"/healthz": {}}, "components": {"schemas": {"Error": {"type": "string"}}}}
    auth = {
        "paths": {"/token": {"post": {"responses": {"200": {"$ref": "#/components/schemas/Error"}}}}},
        "components": {
            "schemas": {"Error": {"type": "object"}},
            "securitySchemes": {"OAuth2": {"type": "oauth2", "flows": {"password": {"tokenUrl": "token"}}}},
        },
    }
    inference = {"paths": {"/v1/models": {"get": {"responses": {}}}, "/healthz": {"get": {"responses": {}}}}}
    merged = merge_openapi(
        base, [(_route("/auth/", True, "auth"), auth), (_route("/v1/", False, "inference"), inference)], "/auth/token"
    )
    assert set(merged["paths"]) == {"/healthz", "/auth/token", "/v1/models"}
    assert merged["paths"]["/healthz"] == {}  # the gateway's own wins; inference's is unreachable
    ref = merged["paths"]["/auth/token"]["post"]["responses"]["200"]["$ref"]
    assert ref == "#/components/schemas/auth_Error"
    assert merged["components"]["schemas"]["Error"] == {"type": "string"}
    assert merged["components"]["securitySchemes"]["OAuth2"]["flows"]["password"]["tokenUrl"] == "/auth/token"


def test_log_row_record_matches_the_column_order() -> None:
    from dataclasses import astuple
    from datetime import UTC, datetime

    from gateway_service.request_log import COLUMNS, LogRow, record, request_log

    row = LogRow(datetime.now(UTC), "r", "GET", "/v1/x", "inference", 200, 1.5, "1.2.3.4", None, "ua", 0, 2, "u", False)
    assert record(row) == astuple(row)
    assert set(COLUMNS) == {c.name for c in request_log.columns} - {"id"}
