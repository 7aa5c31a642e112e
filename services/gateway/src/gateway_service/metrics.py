"""Prometheus metrics, in a registry per app so several apps can live in one process (tests)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

from modelgate_shared.proxies import Network, forwarded_client, is_trusted
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from .forwarding import forwarded_for_chain

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class GatewayMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("gateway_requests_total", "Proxied requests", ["route", "method", "status"], registry=r)
        self.latency = Histogram(
            "gateway_request_duration_seconds",
            "Time from request to the end of the response, by route",
            ["route"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.rate_limited = Counter("gateway_rate_limited_total", "Requests answered 429", ["route"], registry=r)
        self.rate_limit_backend_errors = Counter(
            "gateway_rate_limit_backend_errors_total", "Rate-limit decisions that Redis could not make", registry=r
        )
        self.upstream_errors = Counter(
            "gateway_upstream_errors_total", "Upstream failures by kind", ["route", "kind"], registry=r
        )
        self.log_queue_depth = Gauge("gateway_log_queue_depth", "Request-log rows waiting to be written", registry=r)
        self.log_rows_written = Counter("gateway_log_rows_written_total", "Request-log rows written", registry=r)
        self.log_rows_dropped = Counter(
            "gateway_log_rows_dropped_total", "Request-log rows dropped because the queue was full", registry=r
        )
        self.log_write_errors = Counter(
            "gateway_log_write_errors_total", "Failed request-log batch writes (retried)", registry=r
        )

    def track_queue_depth(self, depth: Callable[[], int]) -> None:
        self.log_queue_depth.set_function(lambda: float(depth()))


def scraper_allowed(
    peer: str, headers: Iterable[tuple[bytes, bytes]], trusted: Sequence[Network], allowed: Sequence[Network]
) -> bool:
    """Whether a client may read /metrics on the public listener without a token (and, with
    PROBE_ALLOW, probe /healthz and /readyz unlimited): its address,
    resolved as the proxy resolves it (behind a trusted proxy, the X-Forwarded-For walk), is in
    ``allowed``. Unlike the rate limiter, garbage in a trusted chain does not fall back to the
    peer: that peer is the proxy, which may well sit inside an allowed network."""
    client = forwarded_client(peer, forwarded_for_chain(headers), trusted)
    return client is not None and is_trusted(client, allowed)
