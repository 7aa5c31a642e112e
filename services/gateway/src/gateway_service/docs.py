"""Unified ``/docs``: the gateway's own OpenAPI merged with its upstreams', as the gateway exposes them."""

from __future__ import annotations

import copy
import logging
import time
from typing import Any

from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.openapi.utils import get_openapi
from fastapi.responses import HTMLResponse, JSONResponse

from .runtime import Gateway
from .upstreams import Route

log = logging.getLogger(__name__)

TOKEN_URL = "/auth/token"  # noqa: S105 - a URL, not a secret


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


def merge_openapi(base: dict[str, Any], upstream_specs: list[tuple[Route, dict[str, Any]]]) -> dict[str, Any]:
    """Pure: add each upstream's paths under the gateway path that reaches them.

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
                    flow["tokenUrl"] = TOKEN_URL
            security_schemes.setdefault(name, scheme)
        for path, item in spec.get("paths", {}).items():
            public = route.prefix.rstrip("/") + path if route.strip_prefix else path
            if not public.startswith(route.prefix):
                continue  # not reachable through this route (e.g. inference's /healthz)
            tagged = copy.deepcopy(item)
            for operation in tagged.values():
                if isinstance(operation, dict) and "responses" in operation:
                    operation.setdefault("tags", [route.name])
            paths.setdefault(public, tagged)
    if not security_schemes:
        merged["components"].pop("securitySchemes")
    return merged


class DocsCache:
    """Upstream specs fetched lazily and refreshed at most every ``refresh`` seconds; the
    last good copy (or nothing) serves when an upstream is down."""

    def __init__(self, gateway: Gateway, refresh: float) -> None:
        self.gateway = gateway
        self.refresh = refresh
        self.specs: dict[str, dict[str, Any]] = {}
        self.fetched_at: float | None = None

    async def upstream_specs(self) -> list[tuple[Route, dict[str, Any]]]:
        now = time.monotonic()
        if self.fetched_at is None or now - self.fetched_at >= self.refresh:
            self.fetched_at = now
            for upstream in self.gateway.pool.by_url.values():
                try:
                    response = await upstream.client.get("/openapi.json", timeout=3.0)
                    response.raise_for_status()
                    self.specs[upstream.url] = response.json()
                except Exception as exc:  # docs degrade to what we have; never fail the page
                    log.warning("could not fetch OpenAPI from %s: %r", upstream.url, exc)
        seen: set[tuple[str, str]] = set()
        result = []
        for route in self.gateway.pool.routes:
            for upstream in route.upstreams[:1]:
                spec = self.specs.get(upstream.url)
                if spec is not None and (route.prefix, upstream.url) not in seen:
                    seen.add((route.prefix, upstream.url))
                    result.append((route, spec))
        return result


def install_docs(app: FastAPI, gateway: Gateway) -> None:
    cache = DocsCache(gateway, gateway.settings.docs_refresh_seconds)

    async def openapi_json(request: Request) -> JSONResponse:
        base = get_openapi(title="modelgate", version=app.version, routes=app.routes)
        return JSONResponse(merge_openapi(base, await cache.upstream_specs()))

    async def swagger(request: Request) -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url="/openapi.json",
            title="modelgate API",
            init_oauth={"clientId": "modelgate-docs"},
            swagger_ui_parameters={"persistAuthorization": True},
        )

    app.add_api_route("/openapi.json", openapi_json, include_in_schema=False)
    app.add_api_route("/docs", swagger, include_in_schema=False)
