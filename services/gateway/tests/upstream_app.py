"""A small real upstream used in place of auth and inference in the gateway's tests."""

from __future__ import annotations

import asyncio

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse


def upstream_app(name: str) -> FastAPI:
    app = FastAPI(title=name)
    app.state.max_chunk_seen = 0

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.post("/token")
    async def token(request: Request) -> dict[str, str]:
        form = await request.form()
        return {"upstream": name, "username": str(form.get("username", ""))}

    @app.get("/slow")
    async def slow(seconds: float = 5.0) -> dict[str, str]:
        await asyncio.sleep(seconds)
        return {"upstream": name}

    @app.post("/upload")
    async def upload(request: Request) -> dict[str, int]:
        # Counts bytes as they arrive: proves the body was streamed, not just delivered.
        size = chunks = 0
        async for chunk in request.stream():
            size += len(chunk)
            chunks += 1 if chunk else 0
        return {"bytes": size, "chunks": chunks}

    @app.get("/stream")
    async def stream(parts: int = 3) -> StreamingResponse:
        async def body():  # type: ignore[no-untyped-def]
            for i in range(parts):
                yield f"part{i}\n".encode()
                await asyncio.sleep(0)

        return StreamingResponse(body(), media_type="text/plain")

    @app.get("/set-cookie")
    async def set_cookie() -> JSONResponse:
        response = JSONResponse({"upstream": name})
        response.set_cookie("session", "belongs-to-one-user")
        return response

    @app.get("/redirect")
    @app.get("/v1/redirect")
    async def redirect(request: Request, to: str, absolute: bool = True) -> Response:
        # As Starlette's slash redirect does: an absolute URL built from the Host it was sent.
        location = str(request.base_url).rstrip("/") + to if absolute else to
        return Response(status_code=307, headers={"location": location, "content-location": location})

    @app.api_route("/{path:path}", methods=["GET", "POST", "PUT", "DELETE", "PATCH"], include_in_schema=False)
    async def echo(path: str, request: Request) -> JSONResponse:
        body = await request.body()
        return JSONResponse(
            {
                "upstream": name,
                "path": request.url.path,
                "raw_path": request.scope.get("raw_path", b"").decode(),
                "query": request.url.query,
                "method": request.method,
                "headers": [[k, v] for k, v in request.headers.items()],
                "body_bytes": len(body),
            },
            headers={"x-upstream": name, "connection": "keep-alive, x-drop-me", "x-drop-me": "1"},
        )

    return app
