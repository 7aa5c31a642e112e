"""Admin API (``admin`` scope): the request log and per-user usage."""

from __future__ import annotations

from dataclasses import fields
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, get_type_hints

import sqlalchemy as sa
from fastapi import APIRouter, Depends, HTTPException, Query
from modelgate_shared.db import BIGINT_MAX
from modelgate_shared.stored_text import SingleLineText
from pydantic import BaseModel, create_model

from ..deps import Engine, require_admin
from ..request_log import LogRow, request_log

MAX_PAGE = 1000

# A stored row: its id, then LogRow's fields, so the API lists exactly what the writer stores.
_hints = get_type_hints(LogRow)
_logged: dict[str, Any] = {f.name: (_hints[f.name], ...) for f in fields(LogRow)}
RequestLogEntry = create_model("RequestLogEntry", id=(int, ...), **_logged)


class RequestLogPage(BaseModel):
    items: list[RequestLogEntry]
    # Pass as ``before_id`` for the next (older) page; null on the last page.
    next_before_id: int | None


class UserUsage(BaseModel):
    user_sub: str | None
    requests: int
    errors: int  # 5xx answers
    client_errors: int  # 4xx answers, rate-limited ones included
    rate_limited: int
    p50_ms: float
    p95_ms: float
    p99_ms: float


class Usage(BaseModel):
    since: datetime
    until: datetime
    users: list[UserUsage]


router = APIRouter(prefix="/admin", tags=["admin"], dependencies=[Depends(require_admin)])


def log_query(
    *,
    user: str | None,
    status: int | None,
    path: str | None,
    since: datetime | None,
    until: datetime | None,
    before_id: int | None,
    limit: int,
) -> sa.Select[Any]:
    t = request_log.c
    query = sa.select(request_log).order_by(t.id.desc()).limit(limit)
    if user is not None:
        query = query.where(t.user_sub == user)
    if status is not None:
        query = query.where(t.status == status)
    if path is not None:
        # A prefix match, with LIKE wildcards in the input taken literally.
        query = query.where(t.path.startswith(path, autoescape=True))
    if since is not None:
        query = query.where(t.ts >= since)
    if until is not None:
        query = query.where(t.ts < until)
    if before_id is not None:
        query = query.where(t.id < before_id)
    return query


def _aware(value: datetime | None, name: str) -> datetime | None:
    if value is None:
        return None
    if value.tzinfo is None:
        raise HTTPException(422, detail=f"{name} must include a timezone, e.g. 2026-01-01T00:00:00Z")
    try:
        # The driver converts to UTC; 9999-12-31T23:00-05:00 has no UTC datetime.
        return value.astimezone(UTC)
    except OverflowError:
        raise HTTPException(422, detail=f"{name} is out of range once converted to UTC") from None


# Every filter is bounded to what its column holds: a NUL, an id beyond a bigint or a date
# beyond the years Python converts to UTC would otherwise fail in the driver, as a 500.
@router.get("/request-log", summary="Proxied requests, newest first, paginated by id")
async def read_request_log(
    engine: Engine,
    user: Annotated[SingleLineText | None, Query(description="user sub", max_length=256)] = None,
    status: Annotated[int | None, Query(ge=100, le=599)] = None,
    path: Annotated[SingleLineText | None, Query(description="path prefix", max_length=2048)] = None,
    since: Annotated[datetime | None, Query(description="inclusive, ISO 8601 with timezone")] = None,
    until: Annotated[datetime | None, Query(description="exclusive, ISO 8601 with timezone")] = None,
    before_id: Annotated[int | None, Query(ge=1, le=BIGINT_MAX)] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 100,
) -> RequestLogPage:
    query = log_query(
        user=user,
        status=status,
        path=path,
        since=_aware(since, "since"),
        until=_aware(until, "until"),
        before_id=before_id,
        limit=limit,
    )
    async with engine.connect() as conn:
        rows = (await conn.execute(query)).mappings().all()
    return RequestLogPage(
        items=[RequestLogEntry.model_validate(dict(r)) for r in rows],
        next_before_id=rows[-1]["id"] if len(rows) == limit else None,
    )


@router.get("/usage", summary="Per-user request counts, errors and latency percentiles")
async def usage(engine: Engine, window_seconds: Annotated[int, Query(ge=1, le=90 * 86400)] = 3600) -> Usage:
    until = datetime.now(UTC)
    since = until - timedelta(seconds=window_seconds)
    t = request_log.c
    latency = sa.func.percentile_cont
    query = (
        sa.select(
            t.user_sub,
            sa.func.count().label("requests"),
            sa.func.count().filter(t.status >= 500).label("errors"),
            sa.func.count().filter(t.status.between(400, 499)).label("client_errors"),
            sa.func.count().filter(t.rate_limited).label("rate_limited"),
            latency(0.5).within_group(t.latency_ms).label("p50_ms"),
            latency(0.95).within_group(t.latency_ms).label("p95_ms"),
            latency(0.99).within_group(t.latency_ms).label("p99_ms"),
        )
        .where(t.ts >= since)
        .group_by(t.user_sub)
        .order_by(sa.desc("requests"))
    )
    async with engine.connect() as conn:
        rows = (await conn.execute(query)).mappings().all()
    return Usage(since=since, until=until, users=[UserUsage.model_validate(dict(r)) for r in rows])
