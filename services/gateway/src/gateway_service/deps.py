"""FastAPI dependencies for the gateway's own endpoints (the proxy uses none)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from modelgate_shared.bearer import require_scopes
from sqlalchemy.ext.asyncio import AsyncEngine

from .state import GatewayState

# Guards a whole router, so no admin endpoint can be added without it.
require_admin = require_scopes("admin")


async def get_state(request: Request) -> GatewayState:
    # async: a plain def dependency costs a worker-thread round trip per request.
    state: GatewayState = request.app.state.gateway
    return state


State = Annotated[GatewayState, Depends(get_state)]


async def get_engine(state: State) -> AsyncEngine:
    return state.engine


Engine = Annotated[AsyncEngine, Depends(get_engine)]
