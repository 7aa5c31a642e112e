"""``/healthz`` (the process is up) and ``/readyz`` (its dependencies are)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping

from fastapi import APIRouter
from fastapi.responses import JSONResponse

log = logging.getLogger(__name__)

Check = Callable[[], Awaitable[object]]


async def run_checks(checks: Mapping[str, Check], limit_seconds: float = 2.0) -> tuple[bool, dict[str, str]]:
    async def one(name: str, check: Check) -> tuple[str, str]:
        try:
            await asyncio.wait_for(check(), limit_seconds)
            return name, "ok"
        except Exception as exc:  # readiness reports any failure, it never raises
            log.warning("readiness check %s failed: %r", name, exc)
            return name, f"failed: {type(exc).__name__}: {exc}"[:300]

    results = dict(await asyncio.gather(*(one(n, c) for n, c in checks.items())))
    return all(v == "ok" for v in results.values()), results


def health_router(checks_factory: Callable[[], Mapping[str, Check]]) -> APIRouter:
    """Readiness checks come from a factory so they can use state built in lifespan."""
    router = APIRouter(tags=["health"])

    @router.get("/healthz", summary="Liveness: the process is up")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @router.get("/readyz", summary="Readiness: dependencies reachable")
    async def readyz() -> JSONResponse:
        ok, results = await run_checks(checks_factory())
        return JSONResponse(
            {"status": "ready" if ok else "not ready", "checks": results}, status_code=200 if ok else 503
        )

    return router
