"""Route table and upstream pools: prefix matching, round-robin, cooldown after refusals."""

from __future__ import annotations

import itertools
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx

from .settings import GatewaySettings, RouteConfig
from .transport import UpstreamTransport


@dataclass(eq=False)
class Upstream:
    """One upstream URL: its pooled httpx client and, for the proxy, that client's transport.

    The proxy hands its requests straight to the transport (httpx's public transport API),
    not to ``client.send``: a byte relay must not get the client's default headers or
    have one caller's cookies stored and replayed for the next, it wants no auth or
    redirect handling, and that request building was the largest single cost left on
    the hop. The client, on the same pool, serves the gateway's own calls (readiness,
    OpenAPI).
    """

    url: str
    client: httpx.AsyncClient
    transport: httpx.AsyncBaseTransport
    # Request extensions carrying the upstream timeouts, as httpx's client would set them.
    extensions: dict[str, Any]
    down_until: float = 0.0

    def healthy(self, now: float) -> bool:
        return now >= self.down_until


@dataclass(eq=False)
class Route:
    name: str
    prefix: str
    strip_prefix: bool
    upstreams: list[Upstream]
    _turn: itertools.count[int] = field(default_factory=itertools.count)

    def candidates(self, now: float) -> list[Upstream]:
        """Healthy upstreams, starting with the next one in round-robin order."""
        n = len(self.upstreams)
        start = next(self._turn) % n
        ordered = self.upstreams[start:] + self.upstreams[:start]
        return [u for u in ordered if u.healthy(now)]

    def reaches(self, path: str) -> bool:
        """``path`` is under the prefix, or is the prefix without its closing slash: the
        Open Inference Protocol's server metadata is ``GET /v2``, under the route ``/v2/``."""
        return path.startswith(self.prefix) or path == self.prefix[:-1]

    def upstream_path(self, raw_path: bytes) -> bytes | None:
        """The path asked of the upstream, from the raw (still percent-encoded) request path.

        None when the raw path does not spell the prefix literally (``/aut%68/token``): routing
        matched the decoded path, and cutting the raw one by the prefix's length would cut
        inside the escape and glue its rest to the upstream's host and port.
        """
        stem = self.prefix[:-1].encode()
        rest = raw_path[len(stem) :]
        if not raw_path.startswith(stem) or rest[:1] not in (b"/", b""):
            return None
        if self.strip_prefix:
            return rest or b"/"
        return raw_path


def match_route(routes: Sequence[Route], path: str) -> Route | None:
    """The longest prefix that reaches ``path``."""
    best: Route | None = None
    for route in routes:
        if route.reaches(path) and (best is None or len(route.prefix) > len(best.prefix)):
            best = route
    return best


def _upstream(url: str, settings: GatewaySettings) -> Upstream:
    timeout = httpx.Timeout(
        connect=settings.upstream_connect_timeout_seconds,
        read=settings.upstream_read_timeout_seconds,
        write=settings.upstream_write_timeout_seconds,
        pool=settings.upstream_pool_timeout_seconds,
    )
    transport = UpstreamTransport(
        httpx.Limits(
            max_connections=settings.upstream_max_connections,
            max_keepalive_connections=settings.upstream_max_connections,
            keepalive_expiry=settings.upstream_keepalive_seconds,
        )
    )
    client = httpx.AsyncClient(
        base_url=url, timeout=timeout, transport=transport, follow_redirects=False, trust_env=False
    )
    return Upstream(url, client, transport, {"timeout": timeout.as_dict()})


class UpstreamPool:
    """One pooled client per distinct upstream URL, shared by every route that uses it."""

    def __init__(self, settings: GatewaySettings) -> None:
        self.cooldown = settings.upstream_cooldown_seconds
        self.by_url: dict[str, Upstream] = {}
        self.routes: list[Route] = []
        for config in settings.route_table():
            self.routes.append(self._route(config, settings))

    def _route(self, config: RouteConfig, settings: GatewaySettings) -> Route:
        upstreams = []
        for url in config.upstreams:
            if url not in self.by_url:
                self.by_url[url] = _upstream(url, settings)
            upstreams.append(self.by_url[url])
        name = config.name or config.prefix.strip("/").replace("/", "_") or "root"
        return Route(name=name, prefix=config.prefix, strip_prefix=config.strip_prefix, upstreams=upstreams)

    def mark_down(self, upstream: Upstream) -> None:
        upstream.down_until = time.monotonic() + self.cooldown

    async def aclose(self) -> None:
        for upstream in self.by_url.values():
            await upstream.client.aclose()
