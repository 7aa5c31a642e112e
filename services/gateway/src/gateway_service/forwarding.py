"""Header handling between client and upstream (pure functions over ASGI header lists)."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from urllib.parse import urljoin, urlsplit

from modelgate_shared.proxies import Network, forwarded_client, is_trusted, split_forwarded_for

from .upstreams import Route, match_route

Headers = list[tuple[bytes, bytes]]

# RFC 9110 7.6.1 hop-by-hop headers, plus those the gateway sets itself.
HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-authenticate",
        b"proxy-authorization",
        b"proxy-connection",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
    }
)
_SET_BY_GATEWAY = frozenset({b"host", b"x-forwarded-for", b"x-forwarded-proto", b"x-forwarded-host", b"x-request-id"})
_SET_BY_GATEWAY_SERVER = frozenset({b"x-request-id", b"date", b"server"})
# RFC 9110 5.5: optional whitespace around a field value is not part of it. uvicorn's parser
# (httptools) trims only the leading OWS, and h11 on the upstream side refuses a value that
# still ends in some (which was a 502), so every forwarded value is trimmed.
_OWS = b" \t"
# RFC 9110 5.1 and 5.5, for naming the header h11 refused (off the hot path): a token, and a
# value of visible characters (or obs-text), SP and HTAB only between them.
_FIELD_NAME = re.compile(rb"[-!#$%&'*+.^_`|~0-9A-Za-z]+")
_FIELD_VALUE = re.compile(rb"(?:[\x21-\x7e\x80-\xff]+(?:[ \t]+[\x21-\x7e\x80-\xff]+)*)?")


def _connection_tokens(headers: Iterable[tuple[bytes, bytes]]) -> set[bytes]:
    """Headers named in Connection are hop-by-hop too (RFC 9110 7.6.1)."""
    names: set[bytes] = set()
    for key, value in headers:
        if key == b"connection":
            names.update(t.strip().lower() for t in value.split(b",") if t.strip())
    return names


def forwarded_for_chain(headers: Iterable[tuple[bytes, bytes]]) -> list[str]:
    return split_forwarded_for(value.decode("latin-1") for key, value in headers if key == b"x-forwarded-for")


def client_ip(peer: str, headers: Iterable[tuple[bytes, bytes]], trusted: Sequence[Network]) -> str:
    """The client address (``modelgate_shared.proxies.forwarded_client``); garbage in a trusted
    chain falls back to the peer, which is what we know for sure."""
    return forwarded_client(peer, forwarded_for_chain(headers), trusted) or peer


def upstream_headers(
    headers: Sequence[tuple[bytes, bytes]],
    *,
    peer: str,
    scheme: str,
    request_id: str,
    trusted: Sequence[Network],
) -> Headers:
    """Request headers for the upstream: hop-by-hop removed, X-Forwarded-* and X-Request-ID set.

    A client's own X-Forwarded-* is kept only when it comes from a trusted proxy, or an
    upstream that believes the header could be fooled by any client.
    """
    drop = HOP_BY_HOP | _SET_BY_GATEWAY | _connection_tokens(headers)
    out: Headers = [(k, v.strip(_OWS)) for k, v in headers if k not in drop]
    from_proxy = is_trusted(peer, trusted)
    chain = forwarded_for_chain(headers) if from_proxy else []
    chain.append(peer)
    out.append((b"x-forwarded-for", ", ".join(chain).encode("latin-1")))
    proto = scheme
    host = b""
    for key, value in headers:
        if key == b"host":
            host = value.strip(_OWS)
        elif key == b"x-forwarded-proto" and from_proxy:
            proto = value.strip(_OWS).decode("latin-1")
    out.append((b"x-forwarded-proto", proto.encode("latin-1")))
    if host:
        out.append((b"x-forwarded-host", host))
    out.append((b"x-request-id", request_id.encode("latin-1")))
    return out


def unforwardable_header_detail(headers: Iterable[tuple[bytes, bytes]]) -> str:
    """Why the upstream hop would not send these request headers, naming the first bad one
    (never its value: it may be a credential). For the error path only."""
    for key, value in headers:
        if not _FIELD_NAME.fullmatch(key):
            return "a request header name is not an RFC 9110 token"
        if not _FIELD_VALUE.fullmatch(value.strip(_OWS)):
            name = key.decode("latin-1")[:64]
            return f"request header {name!r} has a character RFC 9110 forbids in a field value (CR, LF, NUL, control)"
    return "the request cannot be forwarded as HTTP/1.1"


def response_headers(headers: Iterable[tuple[bytes, bytes]]) -> Headers:
    """Upstream response headers for the client: hop-by-hop removed; the request id is set by middleware."""
    raw = [(k.lower(), v) for k, v in headers]  # ASGI wants lower-case names
    # The gateway's own server stamps Date and Server: passing the upstream's too would send each twice.
    drop = HOP_BY_HOP | _connection_tokens(raw) | _SET_BY_GATEWAY_SERVER
    return [(k, v) for k, v in raw if k not in drop]


# Response headers that carry a URL the client will follow or store.
_URL_HEADERS = frozenset({b"location", b"content-location"})


class InternalAddress(Exception):
    """An upstream's response points at an internal address no gateway route reaches."""


def _public_path(upstream_url: str, path: str, routes: Sequence[Route]) -> str | None:
    """The gateway path that reaches ``path`` on the upstream at ``upstream_url``, if any."""
    for route in routes:
        if any(u.url == upstream_url for u in route.upstreams):
            public = route.prefix[:-1] + path if route.strip_prefix else path
            if match_route(routes, public) is route:
                return public
    return None


def public_url(value: str, request_url: str, routes: Sequence[Route]) -> str:
    """``value`` (a Location or Content-Location an upstream sent, for ``request_url``) as the
    client must see it: a reference to an upstream becomes the public path that reaches it.

    Upstreams build absolute URLs from the Host they were sent (Starlette's slash redirect):
    passed on, they would hand clients an internal address. Raises :class:`InternalAddress`
    for an upstream's host that no route reaches; any other URL (another site) is left as is.
    """
    try:
        target = urlsplit(urljoin(request_url, value.strip()))
        port = target.port
    except ValueError:  # not a URL we can vet (a bad port or IPv6 literal): never pass it on
        raise InternalAddress from None
    path = target.path or "/"
    internal = False
    for route in routes:
        for upstream in route.upstreams:
            base = urlsplit(upstream.url)
            if target.hostname != base.hostname:
                continue
            internal = True
            # The scheme is not compared: behind a TLS proxy an upstream may build https URLs.
            base_path = base.path.rstrip("/")
            if port != base.port or not path.startswith(base_path + "/"):
                continue
            public = _public_path(upstream.url, path[len(base_path) :], routes)
            if public is not None:
                query = f"?{target.query}" if target.query else ""
                return public + query + (f"#{target.fragment}" if target.fragment else "")
    if internal:
        raise InternalAddress
    return value


def public_url_headers(headers: Headers, request_url: str, routes: Sequence[Route]) -> Headers:
    """Response headers with every URL an upstream gave rewritten by :func:`public_url`."""
    if not any(key in _URL_HEADERS for key, _ in headers):
        return headers
    return [
        (key, public_url(value.decode("latin-1"), request_url, routes).encode("latin-1"))
        if key in _URL_HEADERS
        else (key, value)
        for key, value in headers
    ]


def header(headers: Iterable[tuple[bytes, bytes]], name: bytes) -> bytes | None:
    for key, value in headers:
        if key == name:
            return value
    return None
