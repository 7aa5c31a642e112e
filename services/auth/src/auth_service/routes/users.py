"""Sign-up and the caller's own account: ``/users`` and ``/users/me``."""

from __future__ import annotations

from datetime import UTC, datetime

from fastapi import APIRouter, HTTPException, Response, status
from sqlalchemy.exc import IntegrityError

from ..accounts import (
    UserConflict,
    apply_password_change,
    conflict_from_integrity_error,
    create_user,
    delete_account,
    find_conflict,
)
from ..deps import CurrentUser, DbSession, Hasher, Paging, State
from ..issuing import DEFAULT_SCOPES
from ..login_history import page_of_logins
from ..models import User
from ..schemas import LoginOut, MeUpdate, Page, SignUp, UserOut

router = APIRouter(prefix="/users", tags=["users"])


def conflict(exc: UserConflict) -> HTTPException:
    return HTTPException(status.HTTP_409_CONFLICT, detail=f"{exc.field} is already taken")


@router.post("", status_code=status.HTTP_201_CREATED, response_model=UserOut, summary="Sign up")
async def sign_up(body: SignUp, hasher: Hasher, session: DbSession) -> User:
    try:
        return await create_user(
            session,
            hasher,
            username=body.username,
            email=body.email,
            password=body.password,
            full_name=body.full_name,
            scopes=DEFAULT_SCOPES,
        )
    except UserConflict as exc:
        raise conflict(exc) from None


@router.get("/me", response_model=UserOut, summary="The signed-in user")
async def read_me(user: CurrentUser) -> User:
    return user


@router.patch("/me", response_model=UserOut, summary="Change email, full name or password")
async def update_me(body: MeUpdate, user: CurrentUser, hasher: Hasher, session: DbSession, state: State) -> User:
    now = datetime.now(UTC)
    if body.password is not None:
        if not body.current_password:
            raise HTTPException(
                status.HTTP_422_UNPROCESSABLE_CONTENT, detail="current_password is required to change the password"
            )
        valid, _ = await hasher.verify(body.current_password, user.password_hash)
        if not valid:
            raise HTTPException(status.HTTP_403_FORBIDDEN, detail="current_password is incorrect")
        await apply_password_change(session, hasher, user, body.password, now)
    if body.email is not None and body.email != user.email:
        if await find_conflict(session, None, body.email, exclude=user.id):
            raise conflict(UserConflict("email"))
        user.email = body.email
    if "full_name" in body.model_fields_set:
        user.full_name = body.full_name
    try:
        await session.commit()
    except IntegrityError as exc:
        await session.rollback()
        raise conflict(conflict_from_integrity_error(exc)) from None
    await state.revocations.publish(session)
    await session.refresh(user)
    return user


@router.delete("/me", status_code=status.HTTP_204_NO_CONTENT, summary="Delete the account and all its data")
async def delete_me(user: CurrentUser, session: DbSession, state: State) -> Response:
    await delete_account(session, user)
    await session.commit()
    await state.revocations.publish(session)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/me/logins", response_model=Page[LoginOut], summary="The signed-in user's login history, newest first")
async def my_logins(page: Paging, user: CurrentUser, session: DbSession) -> Page[LoginOut]:
    rows, total = await page_of_logins(session, user.id, page.limit, page.offset)
    return Page[LoginOut](
        items=[LoginOut.model_validate(r) for r in rows], total=total, limit=page.limit, offset=page.offset
    )
