"""``/healthz`` (the process is up) and ``/readyz`` (it can serve under its settings).

``/readyz`` answers ``{"status": "ready" | "not ready", "checks": {name: result}}``, 200 when
ready and 503 when not. A result is ``"ok"``, ``"failed: <why>"`` (the service cannot serve:
not ready) or, for a :class:`Degradable` check, ``"degraded: <what is off>: <why>"`` (it serves
without that dependency, so it stays ready).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from .error_bodies import exception_type_name

log = logging.getLogger(__name__)

Check = Callable[[], Awaitable[object]]


@dataclass(frozen=True)
class Degradable:
    """A dependency the service can serve without: its failure is reported, not a reason to
    be pulled from the load balancer. ``consequence`` says what goes missing meanwhile."""

    check: Check
    consequence: str


async def run_checks(
    checks: Mapping[str, Check | Degradable], limit_seconds: float = 2.0
) -> tuple[bool, dict[str, str]]:
    async def one(name: str, entry: Check | Degradable) -> tuple[str, str, bool]:
        check = entry.check if isinstance(entry, Degradable) else entry
        try:
            await asyncio.wait_for(check(), limit_seconds)
            return name, "ok", True
        except Exception as exc:  # readiness reports any failure, it never raises
            log.warning("readiness check %s failed: %r", name, exc)
            # The type only: messages name hosts and ports, and /readyz can be public.
            why = exception_type_name(exc)
            if isinstance(entry, Degradable):
                return name, f"degraded: {entry.consequence}: {why}"[:300], True
            return name, f"failed: {why}"[:300], False

    outcomes = await asyncio.gather(*(one(n, c) for n, c in checks.items()))
    return all(ok for _, _, ok in outcomes), {name: result for name, result, _ in outcomes}


def health_router(checks_factory: Callable[[], Mapping[str, Check | Degradable]]) -> APIRouter:
    """Readiness checks come from a factory so they can use state built in lifespan."""
    router = APIRouter(tags=["health"])

    @router.get("/healthz", summary="Liveness: the process is up")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @router.get("/readyz", summary="Readiness: can serve under its settings")
    async def readyz() -> JSONResponse:
        ok, results = await run_checks(checks_factory())
        return JSONResponse(
            {"status": "ready" if ok else "not ready", "checks": results}, status_code=200 if ok else 503
        )

    return router
