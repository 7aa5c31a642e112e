"""The platform's one OpenAPI: the gateway's own merged with its upstreams', as the gateway exposes them."""

from __future__ import annotations

import copy
import logging
import time
from typing import Any

from .upstreams import Route, UpstreamPool

log = logging.getLogger(__name__)


def _rewrite_refs(node: Any, renames: dict[str, str]) -> Any:
    if isinstance(node, dict):
        out = {}
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                name = value.rsplit("/", 1)[-1]
                if value.startswith("#/components/schemas/") and name in renames:
                    value = f"#/components/schemas/{renames[name]}"
            out[key] = _rewrite_refs(value, renames)
        return out
    if isinstance(node, list):
        return [_rewrite_refs(v, renames) for v in node]
    return node


def merge_openapi(
    base: dict[str, Any], upstream_specs: list[tuple[Route, dict[str, Any]]], token_url: str
) -> dict[str, Any]:
    """Pure: add each upstream's paths under the gateway path that reaches them, and point
    every OAuth2 flow at ``token_url``, the token endpoint as clients see it.

    Schemas that collide with a different definition are renamed with the route name
    so no spec silently overwrites another.
    """
    merged = copy.deepcopy(base)
    paths = merged.setdefault("paths", {})
    schemas = merged.setdefault("components", {}).setdefault("schemas", {})
    security_schemes = merged["components"].setdefault("securitySchemes", {})
    for route, spec in upstream_specs:
        renames: dict[str, str] = {}
        for name, schema in spec.get("components", {}).get("schemas", {}).items():
            if name in schemas and schemas[name] != schema:
                renames[name] = f"{route.name}_{name}"
        spec = _rewrite_refs(spec, renames)
        for name, schema in spec.get("components", {}).get("schemas", {}).items():
            schemas[renames.get(name, name)] = schema
        for name, scheme in spec.get("components", {}).get("securitySchemes", {}).items():
            scheme = copy.deepcopy(scheme)
            # Clients log in through the gateway whatever the upstream thinks its token URL is.
            for flow in scheme.get("flows", {}).values():
                if "tokenUrl" in flow:
                    flow["tokenUrl"] = token_url
            security_schemes.setdefault(name, scheme)
        for path, item in spec.get("paths", {}).items():
            public = route.prefix.rstrip("/") + path if route.strip_prefix else path
            if not route.reaches(public):
                continue  # not reachable through this route (e.g. inference's /healthz)
            tagged = copy.deepcopy(item)
            for operation in tagged.values():
                if isinstance(operation, dict) and "responses" in operation:
                    operation.setdefault("tags", [route.name])
            paths.setdefault(public, tagged)
    if not security_schemes:
        merged["components"].pop("securitySchemes")
    return merged


class UpstreamSpecs:
    """The upstreams' own specs, fetched lazily and refreshed at most every ``refresh``
    seconds; the last good copy (or nothing) serves when an upstream is down."""

    def __init__(self, pool: UpstreamPool, refresh: float) -> None:
        self.pool = pool
        self.refresh = refresh
        self.specs: dict[str, dict[str, Any]] = {}
        self.fetched_at: float | None = None

    async def current(self) -> list[tuple[Route, dict[str, Any]]]:
        """Each route's spec, for :func:`merge_openapi`."""
        now = time.monotonic()
        if self.fetched_at is None or now - self.fetched_at >= self.refresh:
            self.fetched_at = now
            for upstream in self.pool.by_url.values():
                try:
                    response = await upstream.client.get("/openapi.json", timeout=3.0)
                    response.raise_for_status()
                    self.specs[upstream.url] = response.json()
                except Exception as exc:  # docs degrade to what we have; never fail the page
                    log.warning("could not fetch OpenAPI from %s: %r", upstream.url, exc)
        seen: set[tuple[str, str]] = set()
        result = []
        for route in self.pool.routes:
            for upstream in route.upstreams[:1]:
                spec = self.specs.get(upstream.url)
                if spec is not None and (route.prefix, upstream.url) not in seen:
                    seen.add((route.prefix, upstream.url))
                    result.append((route, spec))
        return result
