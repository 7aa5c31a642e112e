"""Everything the gateway holds for its lifetime: ``app.state.gateway``."""

from __future__ import annotations

import contextlib
import logging

from modelgate_shared.db import make_engine, ping
from modelgate_shared.health import Check, Degradable
from modelgate_shared.tokens import TokenVerifier
from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from sqlalchemy.ext.asyncio import AsyncEngine

from .identity import IdentityResolver
from .log_writer import LogWriter
from .metrics import GatewayMetrics
from .metrics_listener import MetricsListener
from .openapi import UpstreamSpecs
from .policies import PolicySet, parse_policy
from .ratelimit import GuardedLimiter, RateLimiter
from .settings import GatewaySettings
from .upstreams import Route, Upstream, UpstreamPool

log = logging.getLogger(__name__)


class GatewayState:
    """Built with the app, so the proxy and the routes hold it from the start; the
    lifespan opens its connections (:meth:`start`) and closes them (:meth:`stop`)."""

    def __init__(self, settings: GatewaySettings) -> None:
        self.settings = settings
        self.metrics = GatewayMetrics()
        self.verifier: TokenVerifier = settings.build_verifier()
        self.identity = IdentityResolver(self.verifier)
        self.trusted = settings.trusted_networks()
        self.metrics_allow = settings.metrics_networks()
        self.metrics_listener: MetricsListener | None = None
        self.policies = PolicySet(
            key_prefix=settings.redis_key_prefix,
            default=settings.policy("rate_limit_default"),
            login_ip=settings.policy("rate_limit_login_ip"),
            login_username=settings.policy("rate_limit_login_username"),
            overrides={key: parse_policy(value, key) for key, value in settings.rate_limit_overrides.items()},
            own=settings.policy("rate_limit_own"),
        )
        self.probe_allow = settings.probe_networks()
        self.pool: UpstreamPool
        self.redis: Redis
        self.redis_pool: BlockingConnectionPool
        self.limiter: GuardedLimiter
        self.writer: LogWriter
        self.engine: AsyncEngine
        self.upstream_specs: UpstreamSpecs

    async def start(self) -> None:
        s = self.settings
        if s.metrics_port is not None:
            # First: a port that cannot be had stops the start before anything else is opened.
            self.metrics_listener = MetricsListener(self.metrics.registry, s.metrics_host, s.metrics_port)
            await self.metrics_listener.start()
        self.pool = UpstreamPool(s)
        # No client-side retries: a dead Redis must fail the decision fast (open or closed).
        # Blocking pool: under a burst, wait briefly for a connection instead of failing the decision.
        self.redis_pool = BlockingConnectionPool.from_url(
            s.redis_url,
            max_connections=s.redis_max_connections,
            timeout=s.redis_timeout_seconds,
            socket_timeout=s.redis_timeout_seconds,
            socket_connect_timeout=s.redis_timeout_seconds,
            retry=Retry(NoBackoff(), 0),
        )
        self.redis = Redis(connection_pool=self.redis_pool)
        self.limiter = GuardedLimiter(
            RateLimiter(self.redis, s.redis_key_prefix),
            fail_open=s.rate_limit_fail_open,
            errors=self.metrics.rate_limit_backend_errors,
        )
        self.writer = LogWriter(
            s.database_url,
            self.metrics,
            queue_size=s.log_queue_size,
            batch_size=s.log_batch_size,
            flush_interval=s.log_flush_interval_seconds,
            max_backoff=s.log_retry_max_backoff_seconds,
        )
        self.metrics.track_queue_depth(lambda: self.writer.depth)
        self.writer.start()
        self.engine = make_engine(s.database_url, pool_size=2, max_overflow=2)
        self.upstream_specs = UpstreamSpecs(self.pool, s.docs_refresh_seconds)
        try:
            await self.verifier.keys.load()
        except Exception as exc:  # keys may appear later (auth writes them); verify() refetches
            log.warning("token keys not loaded yet (tokens count as anonymous until they are): %s", exc)

    async def stop(self) -> None:
        if self.metrics_listener is not None:
            await self.metrics_listener.close()
        # In-flight requests have finished by now (uvicorn waits for them before lifespan
        # shutdown), so every row is already queued: flush them all.
        await self.writer.close(self.settings.log_shutdown_timeout_seconds)
        await self.pool.aclose()
        with contextlib.suppress(Exception):
            await self.redis.aclose()
            await self.redis_pool.disconnect()
        await self.engine.dispose()

    def readiness_checks(self) -> dict[str, Check | Degradable]:
        checks: dict[str, Check | Degradable] = {
            "redis": self._redis_check(),
            # Requests never wait on Postgres: without it rows queue in memory (then are dropped,
            # counted) and only the admin API fails, so the gateway still serves.
            "postgres": Degradable(
                lambda: ping(self.engine), "request-log rows wait in memory; /admin/request-log and /admin/usage fail"
            ),
        }
        # Named by route, never by address: /readyz is on the public URL. An upstream that is
        # down fails only its routes (502/503), so the gateway stays ready: predictions go on
        # while auth is away.
        routes = self.pool.routes
        for upstream in self.pool.by_url.values():
            labels = list(
                dict.fromkeys(_route_label(route, upstream) for route in routes if upstream in route.upstreams)
            )
            checks[f"upstream {','.join(labels)}"] = Degradable(
                self._upstream_check(upstream), f"requests to {', '.join(labels)} answer 502/503"
            )
        return checks

    def _redis_check(self) -> Check | Degradable:
        """Failing closed, the gateway answers 503 without Redis: not ready. Failing open it
        serves everything, unlimited: ready, and the check says what is off."""
        if not self.settings.rate_limit_fail_open:
            return self._ping_redis
        unchecked = "rate limiting and token revocation" if self.settings.rate_limit_enabled else "token revocation"
        return Degradable(self._ping_redis, f"{unchecked} not enforced while Redis is unreachable (fail-open)")

    async def _ping_redis(self) -> None:
        await self.redis.ping()

    @staticmethod
    def _upstream_check(upstream: Upstream) -> Check:
        async def check() -> None:
            response = await upstream.client.get("/healthz", timeout=2.0)
            response.raise_for_status()

        return check


def _route_label(route: Route, upstream: Upstream) -> str:
    """The route's name, with the upstream's place where the route has several."""
    if len(route.upstreams) == 1:
        return route.name
    return f"{route.name}[{route.upstreams.index(upstream)}]"
