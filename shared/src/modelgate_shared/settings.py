"""Settings base shared by the services, and a fail-fast loader."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, TypeVar

from pydantic import AfterValidator, Field, ValidationError, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from .db import async_url
from .keys import SUPPORTED_ALGORITHMS, allowed_algorithms
from .proxies import parse_networks
from .tokens import TokenVerifier, key_source_from_settings

S = TypeVar("S", bound=BaseSettings)


def _database_url(value: str) -> str:
    async_url(value)  # raises ValueError naming the problem
    return value


def _networks(value: tuple[str, ...]) -> tuple[str, ...]:
    parse_networks(value)  # raises ValueError naming the first bad entry
    return value


# A PostgreSQL URL (postgres:// or postgresql://, any driver suffix); checked at load.
DatabaseUrl = Annotated[str, AfterValidator(_database_url)]
# Addresses or CIDR networks whose X-Forwarded-For is believed; a JSON list in the environment.
TrustedProxies = Annotated[tuple[str, ...], AfterValidator(_networks)]


class ServiceSettings(BaseSettings):
    """Fields every service has. Subclasses set their own ``env_prefix``."""

    model_config = SettingsConfigDict(extra="ignore", frozen=True)

    log_level: str = "INFO"
    log_json: bool = False


def load_settings(cls: type[S], **overrides: object) -> S:
    """Build settings or exit with a message naming every bad field.

    A service that starts with a wrong setting and fails on the first request is
    much harder to diagnose than one that refuses to start.
    """
    try:
        return cls(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        prefix = cls.model_config.get("env_prefix", "")
        lines = [f"invalid settings for {cls.__name__}:"]
        for err in exc.errors():
            field = ".".join(str(p) for p in err["loc"])
            lines.append(f"  {prefix}{field.upper()}: {err['msg']}")
        print("\n".join(lines), file=sys.stderr)
        raise SystemExit(2) from None


class VerifierSettings(BaseSettings):
    """Token-verification fields, mixed into every service that accepts bearer tokens."""

    # Public keys: a PEM or JWKS file, or a folder of them (the mounted "shared public key")...
    public_keys: Path | None = None
    # ...or auth's JWKS URL. One of the two is required.
    jwks_url: str | None = None
    issuer: str = "http://127.0.0.1:8000/auth"
    audience: str = "modelgate-api"
    token_algorithms: frozenset[str] = SUPPORTED_ALGORITHMS
    token_leeway_seconds: int = Field(default=30, ge=0, le=300)
    # Minimum time between key refetches triggered by an unknown kid.
    key_refresh_interval_seconds: float = Field(default=5.0, ge=0.0)

    @model_validator(mode="after")
    def _one_key_source(self) -> VerifierSettings:
        if self.public_keys is None and not self.jwks_url:
            raise ValueError("set PUBLIC_KEYS (a PEM/JWKS file or folder) or JWKS_URL")
        try:
            allowed_algorithms(self.token_algorithms)
        except ValueError as exc:
            raise ValueError(f"TOKEN_ALGORITHMS: {exc}") from None
        return self

    def build_verifier(self) -> TokenVerifier:
        source = key_source_from_settings(self.public_keys, self.jwks_url, self.key_refresh_interval_seconds)
        return TokenVerifier(
            source,
            issuer=self.issuer,
            audience=self.audience,
            algorithms=self.token_algorithms,
            leeway=self.token_leeway_seconds,
        )
