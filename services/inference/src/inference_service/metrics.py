"""Per-model Prometheus metrics for predictions, and ``GET /metrics``.

A registry per app, as in the gateway, so several apps can live in one process (tests).
``/metrics`` has no authentication: inference listens only on the internal network, and the
gateway's route table sends only ``/v1/`` and ``/v2/`` to it, so ``/metrics`` never reaches it
from outside (the gateway answers its own ``/metrics``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, Request
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .routes import v1, v2

if TYPE_CHECKING:
    from .model_store import LoadedModel
    from .state import InferenceState

# The gateway's buckets below 1 ms too: a one-row prediction takes about 0.5 ms.
_DURATION_BUCKETS = (
    0.0001, 0.00025, 0.0005, 0.00075, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
    30.0,
)  # fmt: skip

# The prediction endpoints (each serves a default-version and a /versions/{version} route) and
# their protocol label. Keyed by endpoint so a route's path can change without touching this.
PREDICTION_PROTOCOLS: dict[Callable[..., Any], str] = {
    v1.predict_json: "v1",
    v1.predict_csv: "v1-csv",
    v2.infer: "v2",
}

# The label of a request that failed before its model was resolved (bad token, unknown model
# or version): the path's name would let anyone create label sets at will.
UNRESOLVED_MODEL = "unknown"


class InferenceMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        per_model = ["model", "version", "protocol"]
        self.requests = Counter(
            "inference_requests_total", "Prediction requests by HTTP status", [*per_model, "status"], registry=r
        )
        self.errors = Counter(
            "inference_request_errors_total", "Prediction requests answered 400 or above", per_model, registry=r
        )
        self.duration = Histogram(
            "inference_request_duration_seconds",
            "Time from a prediction request to the end of its response",
            per_model,
            buckets=_DURATION_BUCKETS,
            registry=r,
        )
        self.load_failures = Counter(
            "inference_model_load_failures_total",
            "Model versions that failed to load",
            ["model", "version"],
            registry=r,
        )
        self.models_loaded = Gauge("inference_models_loaded", "Model versions loaded and served", registry=r)
        # (model, version, protocol, status) -> its children: ``labels()`` costs more than the
        # increments themselves. Bounded as the label sets are: loaded models times statuses.
        self._children: dict[tuple[str, str, str, int], tuple[Counter, Counter | None, Histogram]] = {}

    def observe(self, protocol: str, model: LoadedModel | None, status: int, seconds: float) -> None:
        name, version = (model.name, model.version) if model is not None else (UNRESOLVED_MODEL, "")
        key = (name, version, protocol, status)
        children = self._children.get(key)
        if children is None:
            labels = (name, version, protocol)
            errors = self.errors.labels(*labels) if status >= 400 else None
            children = (self.requests.labels(*labels, str(status)), errors, self.duration.labels(*labels))
            self._children[key] = children
        requests, errors, duration = children
        requests.inc()
        if errors is not None:
            errors.inc()
        duration.observe(seconds)

    def model_load_failed(self, name: str, version: str) -> None:
        self.load_failures.labels(name, version).inc()

    def track_loaded(self, count: Callable[[], int]) -> None:
        """``count`` is asked at each scrape."""
        self.models_loaded.set_function(lambda: float(count()))


class MetricsMiddleware:
    """Times prediction requests, labelled with the model that the route's model dependency
    (``deps``) put on ``request.state.model``. Pure ASGI: no task hop, bodies stream untouched."""

    def __init__(self, app: ASGIApp, metrics: InferenceMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # Every prediction is a POST: anything else (metadata, probes, /metrics) costs one comparison.
        if scope["type"] != "http" or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 0

        async def send_with_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_with_status)
        except Exception:
            # The outer error middleware answers it with a 500.
            status = status or 500
            raise
        finally:
            # The router put the matched endpoint on the scope; a cancelled request (client gone
            # before any response) has no status and is not counted.
            protocol = PREDICTION_PROTOCOLS.get(scope.get("endpoint"))  # type: ignore[arg-type]
            if protocol is not None and status:
                model: LoadedModel | None = scope.get("state", {}).get("model")
                self.metrics.observe(protocol, model, status, time.perf_counter() - start)


def _versions_loaded(app: FastAPI) -> int:
    state: InferenceState | None = getattr(app.state, "inference", None)
    if state is None:  # scraped before the lifespan has loaded the models
        return 0
    return len(state.registry.models())


def install_metrics(app: FastAPI) -> InferenceMetrics:
    """The metrics on ``app.state.metrics``, the middleware that feeds them, and ``GET /metrics``."""
    metrics = InferenceMetrics()
    # Read from the app at each scrape, so a registry swapped in by a reload is counted.
    metrics.track_loaded(lambda: _versions_loaded(app))
    app.state.metrics = metrics
    app.add_middleware(MetricsMiddleware, metrics=metrics)

    async def prometheus_metrics(request: Request) -> Response:
        body = generate_latest(request.app.state.metrics.registry)
        # no-store: per-model traffic must not linger in a cache.
        return Response(body, media_type=CONTENT_TYPE_LATEST, headers={"Cache-Control": "no-store"})

    app.add_api_route(
        "/metrics", prometheus_metrics, methods=["GET"], summary="Prometheus metrics", include_in_schema=False
    )
    return metrics
