"""Sign-up and the caller's own account: ``/users`` and ``/users/me``."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from fastapi import APIRouter, HTTPException, Request, Response, status
from modelgate_shared.bearer import unauthorized
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from ..accounts import (
    UserConflict,
    UserGone,
    apply_password_change,
    conflict_from_integrity_error,
    create_user,
    delete_account,
    find_conflict,
    rename_user,
)
from ..deps import CurrentUser, DbSession, Hasher, Paging, State
from ..issuing import DEFAULT_SCOPES
from ..login_history import page_of_logins, username_change
from ..models import User
from ..schemas import LoginOut, MeUpdate, Page, SignUp, UserOut
from ..state import AuthState

router = APIRouter(prefix="/users", tags=["users"])


def conflict(exc: UserConflict) -> HTTPException:
    return HTTPException(status.HTTP_409_CONFLICT, detail=f"{exc.field} is already taken")


async def apply_rename(
    session: AsyncSession,
    state: AuthState,
    user: User,
    new_username: str,
    *,
    now: datetime,
    by: str,
    request: Request,
    gone: HTTPException,
) -> None:
    """``accounts.rename_user`` with the grace setting and its login-history event (``by``: who
    renamed). Refusals are HTTP errors: 409 for a name taken or reserved, ``gone`` when the account
    was deleted meanwhile. Leaves the commit to the caller."""
    grace = timedelta(days=state.settings.username_reuse_grace_days)
    try:
        previous = await rename_user(session, user, new_username, now, grace)
    except UserConflict as exc:
        await session.rollback()
        raise conflict(exc) from None
    except UserGone:
        await session.rollback()
        raise gone from None
    if previous is not None:
        session.add(username_change(user, previous, now, by, request, state.trusted_proxies))


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


@router.patch("/me", response_model=UserOut, summary="Change email, full name, username or password")
async def update_me(
    body: MeUpdate, request: Request, user: CurrentUser, hasher: Hasher, session: DbSession, state: State
) -> User:
    now = datetime.now(UTC)
    renaming = body.username is not None and body.username != user.username
    if body.password is not None or renaming:
        # The username is how the account signs in: changing it proves the password, like changing that.
        what = "password" if body.password is not None else "username"
        if not body.current_password:
            raise HTTPException(
                status.HTTP_422_UNPROCESSABLE_CONTENT, detail=f"current_password is required to change the {what}"
            )
        valid, _ = await hasher.verify(body.current_password, user.password_hash)
        if not valid:
            raise HTTPException(status.HTTP_403_FORBIDDEN, detail="current_password is incorrect")
    # Nothing is committed before every change has passed: a refused one leaves the account as it was.
    if renaming:
        assert body.username is not None
        gone = unauthorized("user no longer exists")
        await apply_rename(session, state, user, body.username, now=now, by="user", request=request, gone=gone)
    if body.email is not None and body.email != user.email:
        if await find_conflict(session, None, body.email, now, exclude=user.id):
            raise conflict(UserConflict("email"))
        user.email = body.email
    if "full_name" in body.model_fields_set:
        user.full_name = body.full_name
    if body.password is not None:
        await apply_password_change(session, hasher, user, body.password, now)
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
