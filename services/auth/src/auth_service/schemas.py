"""Request and response bodies."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Generic, Literal, TypeVar

from modelgate_shared.scopes import (
    BASE_SCOPES,
    MAX_SCOPE_LENGTH,
    MODEL_NAME_PATTERN,
    MODEL_SCOPE_PREFIX,
    is_known_scope,
    ordered_scopes,
)
from modelgate_shared.stored_text import SingleLineText, StoredText
from modelgate_shared.usernames import normalise_username
from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, EmailStr, Field, StringConstraints

from .issuing import DEFAULT_SCOPES
from .passwords import MAX_PASSWORD_LENGTH, password_problem


def normalise_email(raw: str) -> str:
    return raw.strip().lower()


def _check_password(value: str) -> str:
    problem = password_problem(value)
    if problem:
        raise ValueError(problem)
    return value


def _check_scopes(values: list[str]) -> list[str]:
    unknown = sorted(s for s in set(values) if not is_known_scope(s))
    if unknown:
        # Cut short: the values are client input (each is within MAX_SCOPE_LENGTH already).
        raise ValueError(
            f"unknown scope(s) {', '.join(unknown)[:200]}; known: {', '.join(BASE_SCOPES)}"
            f" and {MODEL_SCOPE_PREFIX}<model> (model names match {MODEL_NAME_PATTERN.pattern})"
        )
    return list(ordered_scopes(values))


# Every text field a client sends is a StoredText or a SingleLineText (modelgate_shared.stored_text):
# NUL and unpaired surrogates are a 422 here instead of a 500 from the database or the hasher.
# EmailStr refuses them, and every other control character, itself.
Username = Annotated[SingleLineText, StringConstraints(max_length=200), AfterValidator(normalise_username)]
Email = Annotated[EmailStr, AfterValidator(normalise_email)]
NewPassword = Annotated[str, AfterValidator(_check_password)]
# A password as typed to prove who one is (checked, never stored): within the policy's maximum.
GivenPassword = Annotated[StoredText, StringConstraints(max_length=MAX_PASSWORD_LENGTH)]
FullName = Annotated[SingleLineText, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
Scope = Annotated[SingleLineText, StringConstraints(max_length=MAX_SCOPE_LENGTH)]
ScopeList = Annotated[list[Scope], Field(max_length=32), AfterValidator(_check_scopes)]


class SignUp(BaseModel):
    model_config = ConfigDict(extra="forbid")

    username: Username
    email: Email
    password: NewPassword
    full_name: FullName | None = None


class MeUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    email: Email | None = None
    full_name: FullName | None = None
    username: Username | None = Field(
        default=None, description="The new username (sign-up's rule; the old stays reserved); needs current_password"
    )
    password: NewPassword | None = Field(default=None, description="The new password; needs current_password")
    current_password: GivenPassword | None = None


class AdminUserUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    disabled: bool | None = None
    scopes: ScopeList | None = None
    username: Username | None = Field(default=None, description="Rename the user (the old name stays reserved)")


class UserOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    username: str
    email: str
    full_name: str | None
    scopes: list[str]
    disabled: bool
    created_at: datetime
    updated_at: datetime
    password_changed_at: datetime


class LoginOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    at: datetime
    # "token" (a /token attempt) or "username_changed" (then previous_username is the old name).
    event: str
    username: str | None
    # The service account a client_credentials attempt (or any naming one) authenticated as.
    client_id: str | None
    previous_username: str | None
    client_ip: Annotated[str | None, BeforeValidator(lambda v: None if v is None else str(v))]
    user_agent: str | None
    grant_type: str | None
    success: bool
    reason: str


ClientName = Annotated[SingleLineText, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]


class ClientCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: ClientName
    owner_id: uuid.UUID | None = Field(default=None, description="The accountable user; default: the calling admin")
    scopes: ScopeList = Field(default_factory=lambda: list(DEFAULT_SCOPES))


class ClientUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    disabled: bool | None = Field(default=None, description="true ends the client's tokens within seconds")
    name: ClientName | None = None
    scopes: ScopeList | None = Field(default=None, description="Withdrawing a scope ends the tokens that carry it")


class SecretRotation(BaseModel):
    model_config = ConfigDict(extra="forbid")

    grace_seconds: int | None = Field(
        default=None,
        ge=0,
        le=30 * 86400,
        description="How long the old secret keeps working (default: the server's setting; 0: not at all)",
    )


class ClientOut(BaseModel):
    model_config = ConfigDict(from_attributes=True, populate_by_name=True)

    client_id: str = Field(validation_alias="id")
    name: str
    owner_id: uuid.UUID
    scopes: list[str]
    disabled: bool
    created_at: datetime
    secret_rotated_at: datetime
    # Until when the secret replaced by the last rotation still works (null: it does not).
    previous_secret_expires_at: datetime | None


class ClientWithSecret(ClientOut):
    """Answered once, at creation or rotation: the secret is not stored and cannot be read again."""

    client_secret: str


T = TypeVar("T")


class Page(BaseModel, Generic[T]):
    items: list[T]
    total: int
    limit: int
    offset: int


class TokenResponse(BaseModel):
    access_token: str
    token_type: Literal["bearer"] = "bearer"  # noqa: S105 - the RFC 6750 type name, not a secret
    expires_in: int
    # None (and left out of the response) for a service account's token.
    refresh_token: str | None = None
    scope: str
