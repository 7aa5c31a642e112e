"""User management for holders of the ``admin`` scope."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from fastapi import APIRouter, Depends, HTTPException, Request, Response, status
from modelgate_shared.scopes import ADMIN
from sqlalchemy.ext.asyncio import AsyncSession

from ..accounts import change_scopes, delete_account, page_of_users, revoke_user_tokens
from ..deps import CurrentAdmin, DbSession, Paging, State, get_current_admin
from ..login_history import page_of_logins
from ..models import User
from ..schemas import AdminUserUpdate, LoginOut, Page, UserOut
from .users import apply_rename

router = APIRouter(prefix="/users", tags=["admin"], dependencies=[Depends(get_current_admin)])


async def _user_or_404(session: AsyncSession, user_id: uuid.UUID) -> User:
    user = await session.get(User, user_id)
    if user is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"no user with id {user_id}")
    return user


@router.get("", response_model=Page[UserOut], summary="List users (admin)")
async def list_users(page: Paging, session: DbSession) -> Page[UserOut]:
    users, total = await page_of_users(session, page.limit, page.offset)
    return Page[UserOut](
        items=[UserOut.model_validate(u) for u in users], total=total, limit=page.limit, offset=page.offset
    )


@router.get("/{user_id}", response_model=UserOut, summary="Read a user (admin)")
async def read_user(user_id: uuid.UUID, session: DbSession) -> User:
    return await _user_or_404(session, user_id)


@router.patch(
    "/{user_id}", response_model=UserOut, summary="Disable/enable a user, change their scopes or rename them (admin)"
)
async def update_user(
    user_id: uuid.UUID, body: AdminUserUpdate, request: Request, admin: CurrentAdmin, session: DbSession, state: State
) -> User:
    user = await _user_or_404(session, user_id)
    now = datetime.now(UTC)
    if user.id == admin.id and (body.disabled or (body.scopes is not None and ADMIN not in body.scopes)):
        # Guard against the last admin locking everyone out by accident.
        raise HTTPException(
            status.HTTP_409_CONFLICT, detail="admins cannot disable themselves or drop their own admin scope"
        )
    if body.disabled is not None and body.disabled != user.disabled:
        user.disabled = body.disabled
        if body.disabled:
            await revoke_user_tokens(session, user.id, "user_disabled", now)
    if body.scopes is not None:
        change_scopes(session, user, body.scopes)
    if body.username is not None:
        gone = HTTPException(status.HTTP_404_NOT_FOUND, detail=f"no user with id {user_id}")
        await apply_rename(session, state, user, body.username, now=now, by="admin", request=request, gone=gone)
    await session.commit()
    await state.revocations.publish(session)
    await session.refresh(user)
    return user


@router.delete("/{user_id}", status_code=status.HTTP_204_NO_CONTENT, summary="Delete a user and their data (admin)")
async def delete_user(user_id: uuid.UUID, admin: CurrentAdmin, session: DbSession, state: State) -> Response:
    if user_id == admin.id:
        raise HTTPException(status.HTTP_409_CONFLICT, detail="use DELETE /users/me to delete your own account")
    await delete_account(session, await _user_or_404(session, user_id))
    await session.commit()
    await state.revocations.publish(session)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/{user_id}/logins", response_model=Page[LoginOut], summary="A user's login history (admin)")
async def user_logins(user_id: uuid.UUID, page: Paging, session: DbSession) -> Page[LoginOut]:
    await _user_or_404(session, user_id)
    rows, total = await page_of_logins(session, user_id, page.limit, page.offset)
    return Page[LoginOut](
        items=[LoginOut.model_validate(r) for r in rows], total=total, limit=page.limit, offset=page.offset
    )
