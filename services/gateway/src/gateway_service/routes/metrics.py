"""``GET /metrics`` in the Prometheus text format, for operators only.

On the public listener: a client from ``MODELGATE_GATEWAY_METRICS_ALLOW``, or a bearer token
with the ``admin`` scope (checked as for the admin API); anyone else gets the admin API's
401/403. Prometheus usually scrapes the metrics listener instead (``metrics_listener.py``).
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request, Response
from modelgate_shared.bearer import BearerToken, check_scopes, verified_claims
from modelgate_shared.scopes import ADMIN
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from ..deps import State
from ..metrics import scraper_allowed


async def operator_only(request: Request, state: State, token: BearerToken) -> None:
    if state.metrics_allow:
        peer = request.client.host if request.client else "unknown"
        if scraper_allowed(peer, request.headers.raw, state.trusted, state.metrics_allow):
            return
    check_scopes(await verified_claims(request, token), ADMIN)


router = APIRouter(tags=["observability"], dependencies=[Depends(operator_only)])


@router.get("/metrics", summary="Prometheus metrics", include_in_schema=False)
async def prometheus_metrics(state: State) -> Response:
    # no-store: per-route traffic must not linger in a shared cache.
    return Response(
        generate_latest(state.metrics.registry), media_type=CONTENT_TYPE_LATEST, headers={"Cache-Control": "no-store"}
    )
