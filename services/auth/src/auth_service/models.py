"""SQLAlchemy 2 ORM models: users, usernames given up, service accounts (OAuth2 clients), refresh
tokens, the login history, signing keys."""

from __future__ import annotations

import uuid
from datetime import datetime

from modelgate_shared.scopes import MAX_SCOPE_LENGTH
from sqlalchemy import (
    BigInteger,
    Boolean,
    DateTime,
    ForeignKey,
    Identity,
    Index,
    MetaData,
    String,
    Text,
    func,
)
from sqlalchemy.dialects.postgresql import ARRAY, INET, JSONB, UUID
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

# Explicit constraint names so Alembic migrations stay stable and diffable.
NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class User(Base):
    __tablename__ = "users"

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True, default=uuid.uuid4)
    # Stored normalised (NFKC + casefold), so uniqueness is case-insensitive by construction.
    username: Mapped[str] = mapped_column(String(64), unique=True)
    email: Mapped[str] = mapped_column(String(320), unique=True)
    full_name: Mapped[str | None] = mapped_column(String(200))
    password_hash: Mapped[str] = mapped_column(Text)
    disabled: Mapped[bool] = mapped_column(Boolean, default=False, server_default="false")
    scopes: Mapped[list[str]] = mapped_column(ARRAY(String(MAX_SCOPE_LENGTH)))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), onupdate=func.now()
    )
    password_changed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class UsernameReservation(Base):
    """A name a user renamed away from: nobody else may take it before ``reserved_until``, so a
    renamed account cannot be impersonated at once under its old name. Its own user may take it
    back. One row per name: giving the name up again later overwrites the row."""

    __tablename__ = "username_reservations"

    username: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    released_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    reserved_until: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class Client(Base):
    """A service account: a program's OAuth2 client, which gets access tokens by the
    client_credentials grant (``sub`` = ``id``). Its secret is stored only as a SHA-256 digest
    (``issuing.hash_secret``); after a rotation the previous digest is accepted until
    ``previous_secret_expires_at``, so deployments can roll onto the new secret."""

    __tablename__ = "clients"

    # Public: ``mgc_`` and 128 random bits (service_accounts.new_client_id).
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    # The person accountable for it; deleting them deletes their clients (and ends their tokens).
    owner_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    scopes: Mapped[list[str]] = mapped_column(ARRAY(String(MAX_SCOPE_LENGTH)))
    secret_hash: Mapped[str] = mapped_column(String(64))
    previous_secret_hash: Mapped[str | None] = mapped_column(String(64))
    previous_secret_expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    disabled: Mapped[bool] = mapped_column(Boolean, default=False, server_default="false")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    secret_rotated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class RefreshToken(Base):
    __tablename__ = "refresh_tokens"

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True, default=uuid.uuid4)
    # SHA-256 of the token: a database leak yields nothing that can be presented.
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    family_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), index=True)
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    # The scope granted at login; a refresh never widens it.
    scopes: Mapped[list[str]] = mapped_column(ARRAY(String(MAX_SCOPE_LENGTH)))
    issued_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    revoked_reason: Mapped[str | None] = mapped_column(String(32))
    replaced_by_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("refresh_tokens.id", ondelete="SET NULL"))


class Login(Base):
    __tablename__ = "logins"
    __table_args__ = (
        Index("ix_logins_user_id_at", "user_id", "at"),
        Index("ix_logins_client_id_at", "client_id", "at"),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    # What the row records: a ``/token`` attempt (``token``) or an account event
    # (``username_changed``; login_history.EVENTS).
    event: Mapped[str] = mapped_column(String(32), default="token", server_default="token")
    user_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    # The service account the attempt authenticated as, when it names one that exists (like
    # ``username``, an unknown id is not stored: it may be a secret pasted into the wrong field).
    client_id: Mapped[str | None] = mapped_column(ForeignKey("clients.id", ondelete="CASCADE"))
    # The account's own name when the attempt concerned one; never what the client typed
    # (login_history.settle: an unknown name is often a password in the wrong field).
    # After a rename, the new name; the one it replaced is ``previous_username``.
    username: Mapped[str | None] = mapped_column(String(64))
    previous_username: Mapped[str | None] = mapped_column(String(64))
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    client_ip: Mapped[str | None] = mapped_column(INET)
    user_agent: Mapped[str | None] = mapped_column(String(512))
    grant_type: Mapped[str | None] = mapped_column(String(32))
    success: Mapped[bool] = mapped_column(Boolean)
    reason: Mapped[str] = mapped_column(String(64))


class SigningKeyRecord(Base):
    """Every key auth has published, by kid: which key signed when, and when it left the folder.

    The private key stays a file in KEYS_DIR; only the public JWK is kept here, so an audit
    can tell which key a token claims to be signed with long after the file was deleted.
    """

    __tablename__ = "signing_keys"

    kid: Mapped[str] = mapped_column(String(64), primary_key=True)
    algorithm: Mapped[str] = mapped_column(String(16))
    public_jwk: Mapped[dict[str, str]] = mapped_column(JSONB)
    first_seen_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    last_seen_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    # First time this kid was the one signing new tokens; NULL for a key only ever published.
    signing_since: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # Set when the key file is no longer in KEYS_DIR (tokens it signed no longer verify).
    retired_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class RevocationRecord(Base):
    """An access-token revocation (``modelgate_shared.revocation``), kept here so that it survives
    Redis: written in the transaction of the change that revokes, republished to Redis
    periodically, deleted once every token it refuses has expired. One row per subject or
    session, holding the latest not-before."""

    __tablename__ = "revocations"

    # "sub" (every token of a subject: a user's or a client's id) or "sid" (one session).
    kind: Mapped[str] = mapped_column(String(3), primary_key=True)
    target: Mapped[str] = mapped_column(String(64), primary_key=True)
    # Unix seconds, as written to Redis: a token with ``iat`` earlier is refused.
    not_before: Mapped[int] = mapped_column(BigInteger, index=True)
