"""Gateway settings: ``MODELGATE_GATEWAY_*``."""

from __future__ import annotations

from modelgate_shared.bearer import TOKEN_PATH
from modelgate_shared.proxies import Network, parse_networks
from modelgate_shared.revocation import DEFAULT_KEY_PREFIX
from modelgate_shared.settings import DatabaseUrl, ServiceSettings, TrustedProxies, VerifierSettings
from pydantic import BaseModel, Field, field_validator, model_validator
from pydantic_settings import SettingsConfigDict

from .policies import RatePolicy, parse_policy

ENV_PREFIX = "MODELGATE_GATEWAY_"


class RouteConfig(BaseModel):
    """One entry of the route table: a path prefix served by one or more upstreams."""

    prefix: str
    upstreams: list[str] = Field(min_length=1)
    strip_prefix: bool = False
    name: str | None = None

    @field_validator("prefix")
    @classmethod
    def _slashes(cls, value: str) -> str:
        if not value.startswith("/") or not value.endswith("/"):
            raise ValueError("a route prefix starts and ends with '/', like '/v1/'")
        return value

    @field_validator("upstreams")
    @classmethod
    def _http_urls(cls, value: list[str]) -> list[str]:
        for url in value:
            if not url.startswith(("http://", "https://")):
                raise ValueError(f"upstream {url!r} is not an http(s) URL")
        return [url.rstrip("/") for url in value]


class MigrateSettings(ServiceSettings):
    """What ``migrate`` needs: only the database."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore", frozen=True)

    database_url: DatabaseUrl


class GatewaySettings(MigrateSettings, VerifierSettings):
    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore", frozen=True)

    redis_url: str
    # Also where auth writes revocations (its MODELGATE_AUTH_REDIS_KEY_PREFIX must match).
    redis_key_prefix: str = DEFAULT_KEY_PREFIX
    # Redis calls are on the request path: a hung Redis must cost milliseconds, not seconds.
    redis_timeout_seconds: float = Field(default=0.25, gt=0)
    redis_max_connections: int = Field(default=256, ge=1)

    auth_url: str = "http://127.0.0.1:8001"
    inference_url: str = "http://127.0.0.1:8002"
    # Replaces the default table (/auth/ -> auth stripped, /v1/ and /v2/ -> inference) when set (JSON).
    routes: list[RouteConfig] | None = None
    upstream_connect_timeout_seconds: float = Field(default=2.0, gt=0)
    upstream_read_timeout_seconds: float = Field(default=60.0, gt=0)
    upstream_write_timeout_seconds: float = Field(default=60.0, gt=0)
    upstream_pool_timeout_seconds: float = Field(default=5.0, gt=0)
    upstream_max_connections: int = Field(default=200, ge=1)
    # Idle upstream connections are closed after this. Below uvicorn's keep-alive timeout (5 s,
    # the upstreams' default), so the gateway stops reusing a connection before the upstream
    # closes it: a request then rarely meets that close (the transport sends it again if it does).
    upstream_keepalive_seconds: float = Field(default=4.0, gt=0)
    # How long an upstream that refused a connection is skipped.
    upstream_cooldown_seconds: float = Field(default=1.0, ge=0)
    max_request_body_bytes: int = Field(default=50 * 1024 * 1024, ge=0)
    # Peers whose X-Forwarded-For/-Proto are believed (addresses or CIDR networks).
    trusted_proxies: TrustedProxies = ()

    rate_limit_enabled: bool = True
    # "LIMIT/PERIOD[:BURST]", period a number of seconds or second|minute|hour|day.
    rate_limit_default: str = "600/minute:100"
    rate_limit_login_ip: str = "60/minute:30"
    rate_limit_login_username: str = "10/minute:5"
    # The token endpoint as clients see it: POSTs here get the two login policies above.
    login_path: str = TOKEN_PATH
    # JSON {"user:<sub>": "...", "scope:<scope>": "..."}: replaces the default policy for those identities.
    rate_limit_overrides: dict[str, str] = Field(default_factory=dict)
    # Redis unreachable: let requests through (true) or answer 503 (false).
    rate_limit_fail_open: bool = True
    # The gateway's own endpoints (/admin/*, /docs, /openapi.json, /healthz, /readyz, /metrics on
    # the public listener): per token sub, else client IP, in buckets apart from proxied traffic.
    rate_limit_own: str = "600/minute:100"
    # Orchestrator probes: /healthz and /readyz from these networks (addresses or CIDRs, the client
    # IP as resolved behind TRUSTED_PROXIES) are not rate-limited.
    probe_allow: TrustedProxies = ()

    log_queue_size: int = Field(default=100_000, ge=1)
    log_batch_size: int = Field(default=500, ge=1)
    log_flush_interval_seconds: float = Field(default=0.2, gt=0)
    log_retry_max_backoff_seconds: float = Field(default=5.0, gt=0)
    log_shutdown_timeout_seconds: float = Field(default=10.0, ge=0)

    docs_refresh_seconds: float = Field(default=30.0, ge=0)

    # /metrics is for operators. On the public listener it answers a client from these networks
    # (addresses or CIDRs, matched against the client IP as the proxy resolves it behind
    # TRUSTED_PROXIES) or a bearer token with the admin scope; anyone else gets 401/403.
    metrics_allow: TrustedProxies = ()
    # A listener of its own serving only GET /metrics, without authentication, for Prometheus:
    # bind it to an interface only operators reach. Off unless a port is set.
    metrics_port: int | None = Field(default=None, ge=1, le=65535)
    metrics_host: str = "127.0.0.1"

    @field_validator("redis_url")
    @classmethod
    def _redis_scheme(cls, value: str) -> str:
        if not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("must be a redis://, rediss:// or unix:// URL")
        return value

    @model_validator(mode="after")
    def _policies_parse(self) -> GatewaySettings:
        for name in ("rate_limit_default", "rate_limit_login_ip", "rate_limit_login_username", "rate_limit_own"):
            parse_policy(getattr(self, name), name)
        for key, value in self.rate_limit_overrides.items():
            if not key.startswith(("user:", "scope:")):
                raise ValueError(f"RATE_LIMIT_OVERRIDES key {key!r} must start with 'user:' or 'scope:'")
            parse_policy(value, f"rate_limit_overrides[{key!r}]")
        return self

    def route_table(self) -> list[RouteConfig]:
        if self.routes is not None:
            return self.routes
        return [
            RouteConfig(prefix="/auth/", upstreams=[self.auth_url], strip_prefix=True, name="auth"),
            RouteConfig(prefix="/v1/", upstreams=[self.inference_url], name="inference"),
            RouteConfig(prefix="/v2/", upstreams=[self.inference_url], name="inference"),
        ]

    def trusted_networks(self) -> tuple[Network, ...]:
        return parse_networks(self.trusted_proxies)

    def metrics_networks(self) -> tuple[Network, ...]:
        return parse_networks(self.metrics_allow)

    def probe_networks(self) -> tuple[Network, ...]:
        return parse_networks(self.probe_allow)

    def policy(self, name: str) -> RatePolicy:
        return parse_policy(getattr(self, name), name)
