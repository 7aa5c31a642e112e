"""Prometheus metrics, in a registry per app so several apps can live in one process (tests)."""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

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
