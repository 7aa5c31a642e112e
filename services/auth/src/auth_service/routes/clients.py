"""Service-account management for holders of the ``admin`` scope: ``/clients``."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Query, Response, status
from sqlalchemy.ext.asyncio import AsyncSession

from ..deps import CurrentAdmin, DbSession, Paging, State, get_current_admin
from ..login_history import page_of_logins
from ..models import Client
from ..oauth_errors import NO_STORE
from ..schemas import ClientCreate, ClientOut, ClientUpdate, ClientWithSecret, LoginOut, Page, SecretRotation
from ..service_accounts import (
    IssuedSecret,
    OwnerNotFound,
    change_client_scopes,
    client_by_id,
    create_client,
    delete_client,
    page_of_clients,
    rotate_secret,
    set_disabled,
)

router = APIRouter(prefix="/clients", tags=["service accounts"], dependencies=[Depends(get_current_admin)])


async def _client_or_404(session: AsyncSession, client_id: str, *, for_update: bool = False) -> Client:
    client = await client_by_id(session, client_id, for_update=for_update)
    if client is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"no client with id {client_id[:64]!r}")
    return client


def _with_secret(issued: IssuedSecret, status_code: int) -> Response:
    body = ClientWithSecret(
        **ClientOut.model_validate(issued.client).model_dump(), client_secret=issued.secret
    ).model_dump_json()
    # The secret is in this body only: no cache may keep it.
    return Response(body, status_code=status_code, media_type="application/json", headers=NO_STORE)


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=ClientWithSecret,
    summary="Create a service account; its secret is in this answer only (admin)",
)
async def create(body: ClientCreate, admin: CurrentAdmin, session: DbSession) -> Response:
    try:
        issued = await create_client(
            session, name=body.name, owner_id=body.owner_id or admin.id, scopes=body.scopes, now=datetime.now(UTC)
        )
    except OwnerNotFound as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, detail=str(exc)) from None
    await session.commit()
    return _with_secret(issued, status.HTTP_201_CREATED)


@router.get("", response_model=Page[ClientOut], summary="List service accounts, optionally one user's (admin)")
async def list_clients(
    page: Paging, session: DbSession, owner_id: Annotated[uuid.UUID | None, Query()] = None
) -> Page[ClientOut]:
    clients, total = await page_of_clients(session, page.limit, page.offset, owner_id)
    return Page[ClientOut](
        items=[ClientOut.model_validate(c) for c in clients], total=total, limit=page.limit, offset=page.offset
    )


@router.get("/{client_id}", response_model=ClientOut, summary="Read a service account (admin)")
async def read(client_id: str, session: DbSession) -> Client:
    return await _client_or_404(session, client_id)


@router.patch(
    "/{client_id}",
    response_model=ClientOut,
    summary="Disable/enable a service account, rename it or change its scopes (admin)",
)
async def update(client_id: str, body: ClientUpdate, session: DbSession, state: State) -> Client:
    client = await _client_or_404(session, client_id, for_update=True)
    if body.disabled is not None:
        set_disabled(session, client, body.disabled)
    if body.name is not None:
        client.name = body.name
    if body.scopes is not None:
        change_client_scopes(session, client, body.scopes)
    await session.commit()
    # Disabling (or withdrawing a scope) ends the client's tokens at the gateway before we answer.
    await state.revocations.publish(session)
    return client


@router.post(
    "/{client_id}/rotate-secret",
    response_model=ClientWithSecret,
    summary="Give a service account a new secret; the old one works for a grace period (admin)",
)
async def rotate(client_id: str, session: DbSession, state: State, body: SecretRotation | None = None) -> Response:
    # Row lock: two rotations at once must not both hand out a secret only one of them stored.
    client = await _client_or_404(session, client_id, for_update=True)
    grace = state.settings.client_secret_rotation_grace_seconds
    if body is not None and body.grace_seconds is not None:
        grace = body.grace_seconds
    issued = rotate_secret(client, datetime.now(UTC), timedelta(seconds=grace))
    await session.commit()
    return _with_secret(issued, status.HTTP_200_OK)


@router.delete(
    "/{client_id}", status_code=status.HTTP_204_NO_CONTENT, summary="Delete a service account; its tokens end (admin)"
)
async def delete(client_id: str, session: DbSession, state: State) -> Response:
    await delete_client(session, await _client_or_404(session, client_id))
    await session.commit()
    await state.revocations.publish(session)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get(
    "/{client_id}/logins",
    response_model=Page[LoginOut],
    summary="A service account's token requests, newest first (admin)",
)
async def client_logins(client_id: str, page: Paging, session: DbSession) -> Page[LoginOut]:
    await _client_or_404(session, client_id)
    rows, total = await page_of_logins(session, None, page.limit, page.offset, client_id=client_id)
    return Page[LoginOut](
        items=[LoginOut.model_validate(r) for r in rows], total=total, limit=page.limit, offset=page.offset
    )
