"""FastAPI dependencies, each behind an ``Annotated`` alias: a route asks for ``session: DbSession``.

The functions are ``async def`` even where nothing is awaited: a plain ``def`` dependency
costs a worker-thread round trip per request. ``get_ring`` is the exception (see there).
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, HTTPException, Query, Request, status
from modelgate_shared.bearer import require_scopes, unauthorized
from modelgate_shared.db import BIGINT_MAX
from modelgate_shared.scopes import ADMIN
from modelgate_shared.tokens import AccessClaims
from sqlalchemy.ext.asyncio import AsyncSession

from .keyring import KeyRing
from .models import User
from .passwords import PasswordHasher
from .state import AuthState


async def get_state(request: Request) -> AuthState:
    # async: a plain def dependency costs a worker-thread round trip per request.
    state: AuthState = request.app.state.auth
    return state


State = Annotated[AuthState, Depends(get_state)]


def get_ring(state: State) -> KeyRing:
    # Plain def, so it runs on a worker thread: the rescan behind current_ring() stats the key
    # folder and, after a rotation, parses the new keys and rewrites the JWKS file.
    return state.current_ring()


Ring = Annotated[KeyRing, Depends(get_ring)]


async def get_session(state: State) -> AsyncIterator[AsyncSession]:
    async with state.sessions() as session:
        yield session


DbSession = Annotated[AsyncSession, Depends(get_session)]


async def get_hasher(state: State) -> PasswordHasher:
    return state.hasher


Hasher = Annotated[PasswordHasher, Depends(get_hasher)]


@dataclass(frozen=True, slots=True)
class PageRequest:
    limit: int
    offset: int


async def get_page_request(
    limit: Annotated[int, Query(ge=1, le=200)] = 50, offset: Annotated[int, Query(ge=0, le=BIGINT_MAX)] = 0
) -> PageRequest:
    return PageRequest(limit, offset)


# The ``limit`` and ``offset`` query parameters of every list endpoint; the offset within a
# bigint, what OFFSET (and asyncpg) can take.
Paging = Annotated[PageRequest, Depends(get_page_request)]

# Any valid token, and one that carries the admin scope.
Claims = Annotated[AccessClaims, Depends(require_scopes())]
AdminClaims = Annotated[AccessClaims, Depends(require_scopes(ADMIN))]


async def get_current_user(claims: Claims, session: DbSession) -> User:
    if "client_id" in claims.raw:
        # A service account's token: valid, but these routes act for a person.
        raise HTTPException(status.HTTP_403_FORBIDDEN, detail="a service account's token cannot act as a user")
    try:
        user_id = uuid.UUID(claims.sub)
    except ValueError:
        raise unauthorized("token subject is not a user id") from None
    user = await session.get(User, user_id)
    if user is None:
        raise unauthorized("user no longer exists")
    if user.disabled:
        raise unauthorized("user is disabled")
    if claims.issued_at < int(user.password_changed_at.timestamp()):
        # The password changed after this token was issued; make the holder log in again.
        raise unauthorized("token predates a password change")
    return user


CurrentUser = Annotated[User, Depends(get_current_user)]


async def get_current_admin(claims: AdminClaims, user: CurrentUser) -> User:
    # The token's scope is not enough: the admin right may have been withdrawn since it was issued.
    if ADMIN not in user.scopes:
        raise HTTPException(status.HTTP_403_FORBIDDEN, detail="user no longer has the admin scope")
    return user


CurrentAdmin = Annotated[User, Depends(get_current_admin)]
