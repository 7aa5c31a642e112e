"""``/docs`` and ``/openapi.json``: the merged platform spec, not FastAPI's own (the app turns those off).

Swagger UI's files come from the fastapi-swagger package and are served from here, so the page
works without internet and asks no other site for anything: its CSP allows this origin only.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import re
from importlib.resources import files

from fastapi import APIRouter, HTTPException, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.openapi.utils import get_openapi
from fastapi.responses import HTMLResponse, JSONResponse, Response

from ..deps import State
from ..openapi import merge_openapi

router = APIRouter(include_in_schema=False)

ASSETS_PATH = "/docs/assets"
_ASSET_TYPES = {
    "swagger-ui-bundle.js": "text/javascript; charset=utf-8",
    "swagger-ui.css": "text/css; charset=utf-8",
    "favicon-32x32.png": "image/png",
}
# The file names do not change with Swagger UI's version: browsers revalidate (ETag) after a day.
_ASSET_CACHE = "public, max-age=86400"


def _swagger_page() -> tuple[bytes, str]:
    """The page and its Content-Security-Policy (pure: the same for every request)."""
    html = get_swagger_ui_html(
        openapi_url="/openapi.json",
        title="modelgate API",
        swagger_js_url=f"{ASSETS_PATH}/swagger-ui-bundle.js",
        swagger_css_url=f"{ASSETS_PATH}/swagger-ui.css",
        swagger_favicon_url=f"{ASSETS_PATH}/favicon-32x32.png",
        init_oauth={"clientId": "modelgate-docs"},
        # No online validator: for a Swagger 2.0 document on any host but localhost, Swagger UI
        # would send the spec's URL to validator.swagger.io for a badge.
        swagger_ui_parameters={"persistAuthorization": True, "validatorUrl": None},
    ).body
    # Swagger UI's inline start-up script is allowed by its hash: no 'unsafe-inline'.
    inline = re.findall(rb"<script>(.*?)</script>", bytes(html), re.DOTALL)
    hashes = " ".join(f"'sha256-{base64.b64encode(hashlib.sha256(s).digest()).decode()}'" for s in inline)
    csp = "; ".join(
        [
            "default-src 'none'",
            f"script-src 'self' {hashes}",
            "style-src 'self'",
            "img-src 'self' data:",  # the stylesheet's icons are data: URLs
            "connect-src 'self'",  # the spec, "Try it out" and the token endpoint
            "base-uri 'none'",
            "form-action 'self'",
            "frame-ancestors 'none'",
        ]
    )
    return bytes(html), csp


_PAGE, _PAGE_CSP = _swagger_page()
_PAGE_HEADERS = {
    "content-security-policy": _PAGE_CSP,
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "cache-control": "no-cache",
}


@functools.cache
def _asset(name: str) -> tuple[bytes, str]:
    """The file's bytes and its ETag, read once."""
    content = files("fastapi_swagger.resources").joinpath(name).read_bytes()
    return content, f'"{hashlib.sha256(content).hexdigest()[:32]}"'


@router.get("/openapi.json")
async def openapi_json(request: Request, state: State) -> JSONResponse:
    app = request.app
    base = get_openapi(title="modelgate", version=app.version, routes=app.routes)
    specs = await state.upstream_specs.current()
    return JSONResponse(merge_openapi(base, specs, state.settings.login_path))


@router.get("/docs")
async def swagger() -> HTMLResponse:
    return HTMLResponse(_PAGE, headers=_PAGE_HEADERS)


@router.get(ASSETS_PATH + "/{name}")
async def swagger_asset(name: str, request: Request) -> Response:
    media_type = _ASSET_TYPES.get(name)
    if media_type is None:
        raise HTTPException(404, "no such docs asset")
    content, etag = _asset(name)
    headers = {"etag": etag, "cache-control": _ASSET_CACHE, "x-content-type-options": "nosniff"}
    if etag in request.headers.get("if-none-match", ""):
        return Response(status_code=304, headers=headers)
    return Response(content, media_type=media_type, headers=headers)
