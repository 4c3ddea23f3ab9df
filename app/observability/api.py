"""The API's Prometheus metrics: GET /metrics, request counts and latencies, jobs by status.

Each app made by `create_app()` has its own CollectorRegistry, so several apps in one process
(tests) never clash; the predict histograms are process-wide and registered in each of them.
"""

import hmac
import logging
import time
from collections.abc import Iterable
from typing import Annotated

from fastapi import FastAPI, Header
from fastapi.responses import Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.core.config import get_settings
from app.core.db import get_sessionmaker
from app.core.errors import ApiError
from app.jobs.repository import JobRepository
from app.observability.collectors import add_runtime_collectors
from app.observability.predict import PREDICT_BATCH_SIZE, PREDICT_DURATION
from app.tables import JobStatus

logger = logging.getLogger(__name__)

UNMATCHED = "unmatched"
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


class HttpMetrics:
    """Request counter and latency histogram, labelled by route template, never raw path."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.requests = Counter(
            "tuneserve_http_requests_total",
            "HTTP requests answered, by method, route template ('unmatched': no route) and status.",
            ["method", "route", "status"],
            registry=registry,
        )
        self.duration = Histogram(
            "tuneserve_http_request_duration_seconds",
            "HTTP request duration until the response's last byte (a whole SSE stream for "
            "/events/stream), by method and route template.",
            ["method", "route"],
            buckets=_LATENCY_BUCKETS,
            registry=registry,
        )

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        self.requests.labels(method, route, str(status)).inc()
        self.duration.labels(method, route).observe(seconds)


def route_template(scope: Scope) -> str:
    """The path template of the route the router picked (set in the scope), else 'unmatched'."""
    route = scope.get("route")
    template = getattr(route, "path_format", None) or getattr(route, "path", None)
    return template if isinstance(template, str) and template else UNMATCHED


class PrometheusMiddleware:
    """Pure ASGI: times each HTTP request and counts it once its answer is over.

    It only watches `http.response.start` for the status, so streamed bodies pass untouched.
    """

    def __init__(self, app: ASGIApp, metrics: HttpMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # an exception before the response started is answered 500 further out

        async def watching_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, watching_send)
        finally:
            method = scope["method"] if scope["method"] in _METHODS else "other"
            self.metrics.observe(
                method, route_template(scope), status, time.perf_counter() - started
            )


def _jobs_family() -> GaugeMetricFamily:
    return GaugeMetricFamily(
        "tuneserve_jobs",
        "Jobs of every tenant by status, counted at scrape time.",
        labels=["status"],
    )


def _queue_family(value: float | None = None) -> GaugeMetricFamily:
    return GaugeMetricFamily(
        "tuneserve_queue_depth",
        "Jobs waiting for a worker (status queued, every tenant), from the database.",
        value=value,
    )


class JobsCollector(Collector):
    """`tuneserve_jobs{status}` and `tuneserve_queue_depth`, read from the database per scrape.

    When the database cannot answer, both are left out of the scrape and a warning is logged.
    """

    def describe(self) -> Iterable[Metric]:
        return [_jobs_family(), _queue_family()]

    def collect(self) -> Iterable[Metric]:
        try:
            with get_sessionmaker()() as session:
                counts = JobRepository(session).count_by_status()
        except Exception as exc:  # any failure: the rest of the scrape must still answer
            reason = (str(exc).strip().splitlines() or [""])[0]
            logger.warning(
                "metrics: cannot count jobs; scrape without tuneserve_jobs, "
                "tuneserve_queue_depth: %s: %s",
                type(exc).__name__,
                reason,
            )
            return []
        jobs = _jobs_family()
        statuses = [status.value for status in JobStatus]
        for status in statuses + sorted(set(counts) - set(statuses)):
            jobs.add_metric([status], counts.get(status, 0))
        return [jobs, _queue_family(counts.get(JobStatus.queued.value, 0))]


def check_scrape_token(authorization: str | None, token: str | None) -> None:
    """With a metrics token set, the scrape must send `Authorization: Bearer <token>`."""
    if token is None:
        return
    scheme, _, given = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not given.strip():
        raise ApiError(
            401,
            "missing_metrics_token",
            "GET /metrics needs 'Authorization: Bearer <token>' with TUNESERVE_METRICS_TOKEN.",
            headers={"WWW-Authenticate": "Bearer"},
        )
    if not hmac.compare_digest(given.strip().encode(), token.encode()):
        raise ApiError(
            401,
            "invalid_metrics_token",
            "The metrics token is wrong.",
            headers={"WWW-Authenticate": "Bearer"},
        )


def install_metrics(app: FastAPI) -> CollectorRegistry:
    """Add the metrics middleware and `GET /metrics` (not in the OpenAPI schema; it needs the
    scrape token when TUNESERVE_METRICS_TOKEN is set, and no API key)."""
    registry = CollectorRegistry()
    add_runtime_collectors(registry)
    http_metrics = HttpMetrics(registry)
    registry.register(JobsCollector())
    registry.register(PREDICT_BATCH_SIZE)
    registry.register(PREDICT_DURATION)
    app.add_middleware(PrometheusMiddleware, metrics=http_metrics)
    app.state.metrics_registry = registry

    @app.get("/metrics", include_in_schema=False)
    def metrics(
        authorization: Annotated[str | None, Header()] = None,
    ) -> Response:  # sync: the jobs collector queries the database
        check_scrape_token(authorization, get_settings().metrics_token)
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    return registry
