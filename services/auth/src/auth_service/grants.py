"""The OAuth2 grants: password, refresh_token (rotating, with reuse detection), client_credentials
(service accounts), and refresh-token revocation.

Each function takes a session and leaves committing to the caller, which records the
attempt in ``logins`` in the same transaction: a failed refresh that revoked a family
must be committed even though the client gets an error.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from modelgate_shared.scopes import ordered_scopes
from modelgate_shared.usernames import normalise_username
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from .accounts import user_by_username
from .client_auth import ClientCredentials, authenticate_client
from .issuing import (
    AccessTokenRequest,
    hash_secret,
    issue_access_token,
    new_secret,
    parse_scope,
)
from .keyring import KeyRing
from .models import Client, RefreshToken, User
from .oauth_errors import OAuthError, invalid_grant, temporarily_unavailable
from .passwords import MAX_PASSWORD_LENGTH, HashingBusy, PasswordHasher
from .revocation import note_session_revoked

BAD_CREDENTIALS = "invalid username or password"


@dataclass(frozen=True, slots=True)
class TokenPolicy:
    issuer: str
    audience: str
    access_ttl_seconds: int
    refresh_ttl_seconds: int


@dataclass(frozen=True, slots=True)
class Grant:
    """An issued token: a user's (with a refresh token) or a service account's (without)."""

    access_token: str
    refresh_token: str | None
    scopes: tuple[str, ...]
    expires_in: int
    user: User | None = None
    client: Client | None = None


def _requested_scopes(
    scope: str | None, allowed: set[str], *, user_id: uuid.UUID | None = None, client_id: str | None = None
) -> tuple[str, ...]:
    """The scopes asked for (all of ``allowed`` when none are); ``invalid_scope`` for one not held."""
    requested = parse_scope(scope)
    if not requested:
        return ordered_scopes(allowed)
    extra = requested - allowed
    if extra:
        whose = "user" if client_id is None else "client"
        raise OAuthError(
            "invalid_scope",
            # Cut short: the names are client input.
            f"scope not granted to this {whose}: {' '.join(sorted(extra))[:200]}",
            reason="invalid_scope",
            user_id=user_id,
            client_id=client_id,
        )
    return ordered_scopes(requested)


def _access_token(
    ring: KeyRing, policy: TokenPolicy, user: User, scopes: tuple[str, ...], family_id: uuid.UUID, now: datetime
) -> str:
    request = AccessTokenRequest(
        issuer=policy.issuer,
        audience=policy.audience,
        subject=user.id,
        username=user.username,
        scopes=scopes,
        ttl_seconds=policy.access_ttl_seconds,
        session_id=family_id,
    )
    return issue_access_token(ring.signing, request, now)


def _new_refresh_row(
    user: User, family_id: uuid.UUID, scopes: tuple[str, ...], policy: TokenPolicy, now: datetime
) -> tuple[str, RefreshToken]:
    token = new_secret()
    row = RefreshToken(
        id=uuid.uuid4(),
        token_hash=hash_secret(token),
        family_id=family_id,
        user_id=user.id,
        scopes=list(scopes),
        issued_at=now,
        expires_at=now + timedelta(seconds=policy.refresh_ttl_seconds),
    )
    return token, row


async def password_grant(
    session: AsyncSession,
    hasher: PasswordHasher,
    ring: KeyRing,
    policy: TokenPolicy,
    *,
    username: str,
    password: str,
    scope: str | None,
    now: datetime,
) -> Grant:
    if len(password) > MAX_PASSWORD_LENGTH or len(username) > 200:
        raise invalid_grant(BAD_CREDENTIALS, "bad_credentials")
    try:
        name = normalise_username(username)
    except ValueError:
        name = None
    user = await user_by_username(session, name) if name else None
    # End the read-only transaction before the hash: its connection goes back to the pool for
    # the ~0.25 s bcrypt takes, instead of a login storm holding every connection idle.
    # (Sessions keep loaded objects on commit; the writes below start a new transaction.)
    await session.commit()
    # Unknown users are checked against a dummy hash: same answer, about the same time.
    try:
        valid, new_hash = await hasher.verify(password, user.password_hash if user else None)
    except HashingBusy as busy:
        raise temporarily_unavailable(busy) from None
    if user is None:
        raise invalid_grant(BAD_CREDENTIALS, "unknown_user")
    if not valid:
        raise invalid_grant(BAD_CREDENTIALS, "wrong_password", user.id)
    if user.disabled:
        raise invalid_grant("this account is disabled", "user_disabled", user.id)
    if new_hash:
        user.password_hash = new_hash
    scopes = _requested_scopes(scope, set(user.scopes), user_id=user.id)
    family_id = uuid.uuid4()
    refresh, row = _new_refresh_row(user, family_id, scopes, policy, now)
    session.add(row)
    access = _access_token(ring, policy, user, scopes, family_id, now)
    return Grant(access, refresh, scopes, policy.access_ttl_seconds, user=user)


async def revoke_family(session: AsyncSession, family_id: uuid.UUID, reason: str, now: datetime) -> None:
    """End a session: its refresh tokens here, its access tokens at the gateway once this commits."""
    note_session_revoked(session, family_id)
    await session.execute(
        update(RefreshToken)
        .where(RefreshToken.family_id == family_id, RefreshToken.revoked_at.is_(None))
        .values(revoked_at=now, revoked_reason=reason)
    )


async def refresh_grant(
    session: AsyncSession,
    ring: KeyRing,
    policy: TokenPolicy,
    *,
    refresh_token: str,
    scope: str | None,
    now: datetime,
) -> Grant:
    # FOR UPDATE serialises concurrent uses of one token: the second sees it rotated.
    row = await session.scalar(
        select(RefreshToken).where(RefreshToken.token_hash == hash_secret(refresh_token)).with_for_update()
    )
    if row is None:
        raise invalid_grant("refresh token is invalid", "refresh_token_unknown")
    if row.revoked_at is not None:
        if row.revoked_reason == "rotated":
            # A rotated token came back: it was copied. Kill the whole family, thief and victim alike.
            await revoke_family(session, row.family_id, "reuse_detected", now)
            raise invalid_grant(
                "refresh token was already used; its session is revoked", "refresh_token_reuse", row.user_id
            )
        raise invalid_grant("refresh token is revoked", "refresh_token_revoked", row.user_id)
    if row.expires_at <= now:
        raise invalid_grant("refresh token is expired", "refresh_token_expired", row.user_id)
    user = await session.get(User, row.user_id)
    if user is None:
        raise invalid_grant("refresh token is invalid", "refresh_token_unknown")
    if user.disabled:
        raise invalid_grant("this account is disabled", "user_disabled", user.id)
    # Scopes an admin removed since login are not carried forward.
    granted = set(row.scopes) & set(user.scopes)
    access_scopes = _requested_scopes(scope, granted, user_id=user.id)
    family_scopes = ordered_scopes(granted)
    refresh, new_row = _new_refresh_row(user, row.family_id, family_scopes, policy, now)
    session.add(new_row)
    await session.flush()
    row.revoked_at = now
    row.revoked_reason = "rotated"
    row.replaced_by_id = new_row.id
    access = _access_token(ring, policy, user, access_scopes, row.family_id, now)
    return Grant(access, refresh, access_scopes, policy.access_ttl_seconds, user=user)


async def client_credentials_grant(
    session: AsyncSession,
    ring: KeyRing,
    policy: TokenPolicy,
    *,
    credentials: ClientCredentials,
    scope: str | None,
    now: datetime,
) -> Grant:
    """RFC 6749 4.4: a service account's token, ``sub`` = its client id; no refresh token (4.4.3):
    the client authenticates again for a new one."""
    client = await authenticate_client(session, credentials, now)
    scopes = _requested_scopes(scope, set(client.scopes), client_id=client.id)
    request = AccessTokenRequest(
        issuer=policy.issuer,
        audience=policy.audience,
        subject=client.id,
        username=None,
        scopes=scopes,
        ttl_seconds=policy.access_ttl_seconds,
        client_id=client.id,
    )
    access = issue_access_token(ring.signing, request, now)
    return Grant(access, None, scopes, policy.access_ttl_seconds, client=client)


async def refuse_service_account(session: AsyncSession, credentials: ClientCredentials, now: datetime) -> None:
    """A service account's credentials sent with the password or refresh_token grant: authenticated
    (a wrong secret is ``invalid_client`` as anywhere), then ``unauthorized_client``: service
    accounts get tokens by the client_credentials grant only."""
    client = await authenticate_client(session, credentials, now)
    raise OAuthError(
        "unauthorized_client",
        "service accounts use the client_credentials grant",
        reason="grant_not_allowed",
        client_id=client.id,
    )


async def revoke_refresh_token(session: AsyncSession, token: str, now: datetime) -> bool:
    """RFC 7009: revoke the token's family. False when the token is unknown (still a 200)."""
    row = await session.scalar(select(RefreshToken).where(RefreshToken.token_hash == hash_secret(token)))
    if row is None:
        return False
    await revoke_family(session, row.family_id, "revoked", now)
    return True
