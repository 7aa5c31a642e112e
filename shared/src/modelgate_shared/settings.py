"""Settings base shared by the services, and a fail-fast loader."""

from __future__ import annotations

import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, TypeVar

from pydantic import AfterValidator, AliasChoices, Field, ValidationError, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict, SettingsError

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


@dataclass(frozen=True)
class SettingProblem:
    """One bad setting: the whole environment variable that holds it, and what is wrong."""

    variable: str
    reason: str


def env_variable(cls: type[BaseSettings], field_name: str) -> str:
    """The environment variable a field of ``cls`` is read from (its alias when it has one)."""
    info = cls.model_fields.get(field_name)
    alias = info.validation_alias if info is not None else None
    if isinstance(alias, str):
        return alias.upper()
    if isinstance(alias, AliasChoices):
        # pydantic-settings reads every choice; the first is the documented name.
        first = next((c for c in alias.choices if isinstance(c, str)), None)
        if first is not None:
            return first.upper()
    return f"{cls.model_config.get('env_prefix', '')}{field_name}".upper()


def _field_for(cls: type[BaseSettings], name: str) -> str | None:
    """The field ``name`` denotes: a field name, or an alias (errors name aliased fields so)."""
    lowered = name.lower()
    for field_name in cls.model_fields:
        if field_name.lower() == lowered or env_variable(cls, field_name).lower() == lowered:
            return field_name
    return None


def _path_text(path: Sequence[int | str]) -> str:
    """Where inside a JSON value: ``[0].prefix``."""
    return "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in path).lstrip(".")


def _model_level(cls: type[BaseSettings], message: str) -> SettingProblem:
    """A whole-model validator's error has no location: find the field its message names.

    Validators start their message with the field (``rate_limit_default: ...``) or mention
    fields by upper-case name (``set PUBLIC_KEYS ... or JWKS_URL``); both become full names.
    """
    if (leading := re.match(r"([A-Za-z_][A-Za-z0-9_]*)", message)) and (field := _field_for(cls, leading[1])):
        rest = message[leading.end() :].lstrip(": ")
        return SettingProblem(env_variable(cls, field), rest)
    named: list[str] = []

    def full_name(match: re.Match[str]) -> str:
        field = _field_for(cls, match[0])
        if field is None:
            return match[0]
        named.append(env_variable(cls, field))
        return named[-1]

    # Upper-case words only: "issuer" in prose is not the ISSUER setting.
    text = re.sub(r"\b[A-Z][A-Z0-9_]*[A-Z0-9]\b", full_name, message)
    variable = named[0] if named else f"{cls.model_config.get('env_prefix', '')}*"
    return SettingProblem(variable, text)


def settings_problems(cls: type[BaseSettings], exc: ValidationError | SettingsError) -> list[SettingProblem]:
    """Every problem of a failed load, each named by its whole environment variable."""
    if isinstance(exc, SettingsError):
        # Raised while decoding a complex (JSON) value: 'error parsing value for field "routes" ...'.
        quoted = re.search(r'field "([^"]+)"', str(exc))
        field = _field_for(cls, quoted[1]) if quoted else None
        variable = env_variable(cls, field) if field else f"{cls.model_config.get('env_prefix', '')}*"
        return [SettingProblem(variable, f"not valid JSON ({exc.__cause__ or exc})")]
    problems = []
    for err in exc.errors():
        message = err["msg"].removeprefix("Value error, ")
        loc = err["loc"]
        if not loc:
            problems.append(_model_level(cls, message))
            continue
        field = _field_for(cls, str(loc[0]))
        variable = env_variable(cls, field) if field else str(loc[0]).upper()
        where = _path_text(loc[1:])
        problems.append(SettingProblem(variable, f"{where}: {message}" if where else message))
    return problems


def format_problems(what: str, problems: Sequence[SettingProblem]) -> str:
    return "\n".join([f"invalid settings for {what}:", *(f"  {p.variable}: {p.reason}" for p in problems)])


def load_settings(cls: type[S], **overrides: object) -> S:
    """Build settings or exit with a message naming every bad variable.

    A service that starts with a wrong setting and fails on the first request is
    much harder to diagnose than one that refuses to start.
    """
    try:
        return cls(**overrides)  # type: ignore[arg-type]
    except (ValidationError, SettingsError) as exc:
        print(format_problems(cls.__name__, settings_problems(cls, exc)), file=sys.stderr)
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
