"""Auth settings: ``MODELGATE_AUTH_*`` (plus ``MODELGATE_ADMIN_*`` for the first admin)."""

from __future__ import annotations

from pathlib import Path

from modelgate_shared.keys import SUPPORTED_ALGORITHMS
from modelgate_shared.proxies import Network, parse_networks
from modelgate_shared.revocation import DEFAULT_KEY_PREFIX
from modelgate_shared.settings import DatabaseUrl, ServiceSettings, TrustedProxies
from modelgate_shared.usernames import normalise_username
from pydantic import AliasChoices, Field, SecretStr, field_validator, model_validator
from pydantic_settings import SettingsConfigDict

from .passwords import password_problem


class KeySettings(ServiceSettings):
    """What the ``keys`` commands need: no database, so keys can be made before Postgres exists."""

    model_config = SettingsConfigDict(env_prefix="MODELGATE_AUTH_", extra="ignore", frozen=True)

    keys_dir: Path
    # Where the public JWKS of every key in KEYS_DIR is written (verifiers read it).
    public_jwks_file: Path | None = None
    # Pin the signing key by kid; by default the newest key (last file name) signs.
    signing_kid: str | None = None
    key_algorithm: str = "RS256"

    @field_validator("key_algorithm")
    @classmethod
    def _known_algorithm(cls, value: str) -> str:
        if value not in SUPPORTED_ALGORITHMS:
            raise ValueError(f"must be one of {', '.join(sorted(SUPPORTED_ALGORITHMS))}")
        return value


class AuthSettings(KeySettings):
    database_url: DatabaseUrl
    database_pool_size: int = Field(default=5, ge=1, le=100)
    issuer: str = "http://127.0.0.1:8000/auth"
    audience: str = "modelgate-api"
    # The gateway's Redis: auth writes revocations there (modelgate_shared.revocation). Unset,
    # none are published and a revoked access token keeps working at the gateway until it expires.
    redis_url: str | None = None
    # Must equal the gateway's MODELGATE_GATEWAY_REDIS_KEY_PREFIX.
    redis_key_prefix: str = DEFAULT_KEY_PREFIX
    # Revocations are kept in Postgres; every this many seconds auth writes the ones still in
    # force to Redis again, so a Redis that restarted empty refuses revoked tokens again.
    revocation_republish_seconds: float = Field(default=5.0, gt=0, le=3600)
    bcrypt_rounds: int = Field(default=12, ge=4, le=31)
    # Nice value of the password-hashing threads (one per available CPU). Above 0, a login
    # storm yields the CPU to the event loops of every service; 19 would starve logins
    # entirely while the CPU is otherwise busy. Measured with the bench's login storm.
    bcrypt_nice: int = Field(default=5, ge=0, le=19)
    # Hashes waiting or running at once; beyond it /token answers 503 temporarily_unavailable
    # with Retry-After (and sign-up or a password change a 503) instead of queueing.
    bcrypt_max_pending: int = Field(default=64, ge=1, le=100_000)
    access_token_ttl_seconds: int = Field(default=900, ge=30, le=86400)
    refresh_token_ttl_seconds: int = Field(default=1_209_600, ge=60, le=31_536_000)
    token_leeway_seconds: int = Field(default=30, ge=0, le=300)
    # After a rename, the old username stays reserved to its account this long: nobody else can
    # sign up with it or rename to it, so the account cannot be impersonated at once. 0: free at once.
    username_reuse_grace_days: int = Field(default=30, ge=0, le=3650)
    # After a service account's secret is rotated, the previous one keeps working this long, so a
    # deployment can roll onto the new secret without downtime. A rotation may ask for less (0:
    # the old secret stops at once, for one that leaked). At most 30 days.
    client_secret_rotation_grace_seconds: int = Field(default=86400, ge=0, le=30 * 86400)
    # Addresses or networks (CIDR) whose X-Forwarded-For is believed when recording a
    # login's client IP: the gateway. JSON list in the environment.
    trusted_proxies: TrustedProxies = ("127.0.0.1/32", "::1/128")
    # The first admin, created at start when no user has that name. Unprefixed on purpose:
    # these names are part of the launcher contract.
    admin_username: str | None = Field(
        default=None, validation_alias=AliasChoices("MODELGATE_ADMIN_USERNAME", "admin_username")
    )
    admin_password: SecretStr | None = Field(
        default=None, validation_alias=AliasChoices("MODELGATE_ADMIN_PASSWORD", "admin_password")
    )
    admin_email: str | None = Field(default=None, validation_alias=AliasChoices("MODELGATE_ADMIN_EMAIL", "admin_email"))

    def trusted_proxy_networks(self) -> tuple[Network, ...]:
        return parse_networks(self.trusted_proxies)

    @field_validator("redis_url")
    @classmethod
    def _redis_scheme(cls, value: str | None) -> str | None:
        # docker compose passes unset variables through as empty strings.
        if not value:
            return None
        if not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("must be a redis://, rediss:// or unix:// URL")
        return value

    @field_validator("admin_username")
    @classmethod
    def _admin_username(cls, value: str | None) -> str | None:
        return normalise_username(value) if value else None

    @field_validator("admin_password")
    @classmethod
    def _admin_password(cls, value: SecretStr | None) -> SecretStr | None:
        # docker compose passes unset variables through as empty strings.
        if value is None or not value.get_secret_value():
            return None
        problem = password_problem(value.get_secret_value())
        if problem:
            raise ValueError(problem)
        return value

    @model_validator(mode="after")
    def _admin_pair(self) -> AuthSettings:
        if bool(self.admin_username) != bool(self.admin_password):
            raise ValueError("set both MODELGATE_ADMIN_USERNAME and MODELGATE_ADMIN_PASSWORD, or neither")
        return self
