"""``/docs`` and ``/openapi.json``: the merged platform spec, not FastAPI's own (the app turns those off)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.openapi.utils import get_openapi
from fastapi.responses import HTMLResponse, JSONResponse

from ..deps import State
from ..openapi import merge_openapi

router = APIRouter(include_in_schema=False)


@router.get("/openapi.json")
async def openapi_json(request: Request, state: State) -> JSONResponse:
    app = request.app
    base = get_openapi(title="modelgate", version=app.version, routes=app.routes)
    specs = await state.upstream_specs.current()
    return JSONResponse(merge_openapi(base, specs, state.settings.login_path))


@router.get("/docs")
async def swagger() -> HTMLResponse:
    return get_swagger_ui_html(
        openapi_url="/openapi.json",
        title="modelgate API",
        init_oauth={"clientId": "modelgate-docs"},
        swagger_ui_parameters={"persistAuthorization": True},
    )
