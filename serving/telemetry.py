"""What an operator sees of the service: Prometheus metrics, request ids, the log context.

`RequestTelemetry` is the outermost middleware, so it times every request, refused ones too
(401/429/503 from the gate, 413/415 from the body guard), labelled by route template (never
the raw path: ids in URLs would make a series per user), method and status. It gives every
response an `X-Request-ID` (the caller's, when well-formed, else a new one) and keeps it,
with the recommendation id of a served list, in the context every log line of the request
can read (`RequestContext`).

Several service processes behind one port (STREAMREC_HTTP_PROCESSES) write their metrics to
memory-mapped files in PROMETHEUS_MULTIPROC_DIR, and `/metrics` adds them up, so a scrape that
reaches any one process reports the totals of all.
"""

import copy
import logging
import os
import re
import time
import uuid
from contextvars import ContextVar
from typing import Any

import uvicorn.config
from fastapi import FastAPI
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from prometheus_client.multiprocess import MultiProcessCollector
from starlette.routing import Route, compile_path
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from streamrec.contract import Settings, json_logging_config

from .log_privacy import PseudonymousAccessLog

#: Fine enough for milliseconds, with a bucket at the 10 ms objective.
LATENCY_BUCKETS = (0.001, 0.002, 0.003, 0.005, 0.0075, 0.010, 0.015, 0.025, 0.05, 0.1,
                   0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
LIST_LENGTH_BUCKETS = (0, 1, 2, 5, 10, 20, 50, 100, 200, 500, 1000)

REQUEST_DURATION = Histogram(
    "streamrec_http_request_duration_seconds",
    "Time from a request's arrival to the end of its response, refused requests included.",
    ["route", "method", "status"], buckets=LATENCY_BUCKETS)
LISTS_SERVED = Counter("streamrec_lists_served_total", "Recommendation lists served.",
                       ["recommender"])
LIST_ITEMS = Histogram("streamrec_list_items", "Items in a served list.", ["recommender"],
                       buckets=LIST_LENGTH_BUCKETS)
REDIS_ERRORS = Counter("streamrec_redis_errors_total",
                       "Requests answered 503 because Redis failed or timed out.")
KAFKA_ERRORS = Counter("streamrec_kafka_errors_total",
                       "Publishes to Kafka that failed (posted events answered 503, "
                       "impressions dropped).")
IMPRESSIONS_PUBLISHED = Counter("streamrec_impressions_published_total",
                                "Impression events (one per list shown to a known user) the "
                                "broker took.")
IMPRESSIONS_DROPPED = Counter("streamrec_impressions_dropped_total",
                              "Impression events lost because the broker did not take them.")

#: A caller's X-Request-ID is kept when it is 1 to 64 of these characters; else a new one.
WELL_FORMED_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,64}")
#: Requests that match no route (404) share one label.
UNMATCHED = "unmatched"

request_id: ContextVar[str | None] = ContextVar("request_id", default=None)
recommendation_id: ContextVar[str | None] = ContextVar("recommendation_id", default=None)


#: The list this request served, if any: (recommender, items), counted when the response ends.
served_list: ContextVar[tuple[str, int] | None] = ContextVar("served_list", default=None)


def record_list(recommender: str, list_id: str, length: int) -> None:
    """A list was served: name it in the request's log context, for the metrics to count."""
    recommendation_id.set(list_id)
    served_list.set((recommender, length))


class RequestContext(logging.Filter):
    """Puts the current request's ids on every log record (None outside a request)."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id.get()
        record.recommendation_id = recommendation_id.get()
        return True


def accepted_request_id(scope: Scope) -> str:
    for name, value in scope["headers"]:
        if name == b"x-request-id":
            given = value.decode("latin-1")
            if WELL_FORMED_REQUEST_ID.fullmatch(given):
                return given
            break
    return uuid.uuid4().hex


def path_templates(app: FastAPI) -> list[tuple[re.Pattern[str], str]]:
    """Every path the app serves, as (regex, template): the API's from its OpenAPI document,
    and the documentation pages."""
    templates = [*app.openapi()["paths"],
                 *(route.path for route in app.routes if isinstance(route, Route))]
    return [(compile_path(template)[0], template) for template in templates]


class RequestTelemetry:
    """Request ids for every request; with `observe`, its duration and the list it served
    in the metrics (off only to measure what they cost)."""

    def __init__(self, app: ASGIApp, observe: bool = True) -> None:
        self.app = app
        self.observe = observe
        self.durations: dict[tuple[str, str, int], Histogram] = {}
        #: Each recommender's (lists served, items per list), looked up once.
        self.list_metrics: dict[str, tuple[Counter, Histogram]] = {}
        self.templates: list[tuple[re.Pattern[str], str]] | None = None

    def route_template(self, scope: Scope) -> str:
        """The path template of the route that answered, or would have (requests refused
        before routing), never the raw path."""
        route = scope.get("route")
        if route is not None:
            return route.path
        if self.templates is None:
            self.templates = path_templates(scope["app"])
        path = scope["path"]
        return next((template for pattern, template in self.templates
                     if pattern.match(path)), UNMATCHED)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started = time.perf_counter()
        given_id = accepted_request_id(scope)
        request_id.set(given_id)
        served_list.set(None)
        header = (b"x-request-id", given_id.encode())
        status = 500  # when the app fails before it answers, the server answers 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), header]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            if self.observe:
                self.count(scope, status, time.perf_counter() - started)

    def count(self, scope: Scope, status: int, seconds: float) -> None:
        labels = (self.route_template(scope), scope["method"], status)
        duration = self.durations.get(labels)
        if duration is None:
            duration = self.durations[labels] = REQUEST_DURATION.labels(*labels)
        duration.observe(seconds)
        if (served := served_list.get()) is not None:
            recommender, length = served
            metrics = self.list_metrics.get(recommender)
            if metrics is None:
                metrics = self.list_metrics[recommender] = (LISTS_SERVED.labels(recommender),
                                                            LIST_ITEMS.labels(recommender))
            metrics[0].inc()
            metrics[1].observe(length)


def service_metrics() -> CollectorRegistry:
    """The service's metrics, added up over every service process when they share
    PROMETHEUS_MULTIPROC_DIR."""
    if "PROMETHEUS_MULTIPROC_DIR" in os.environ:
        registry = CollectorRegistry()
        MultiProcessCollector(registry)
        return registry
    return REGISTRY


def exposition() -> tuple[bytes, str]:
    """The metrics in Prometheus' text format."""
    return generate_latest(service_metrics()), CONTENT_TYPE_LATEST


def service_logging_config(settings: Settings, level: str) -> dict[str, Any]:
    """uvicorn's and the service's logging: readable text (uvicorn's format, the access line
    ending in the request id) or JSON lines; both carry the request's ids, and with
    pseudonymous ids the access log holds pseudonyms only."""
    context = {"request_context": {"()": RequestContext}}
    if settings.log_format == "json":
        config = json_logging_config(level, context)
    else:
        config = copy.deepcopy(uvicorn.config.LOGGING_CONFIG)
        config["filters"] = context
        config["formatters"]["access"]["fmt"] += " request_id=%(request_id)s"
        config["formatters"]["service"] = {"format": "%(levelname)s:%(name)s:%(message)s"}
        config["handlers"]["service"] = {"formatter": "service", "class": "logging.StreamHandler",
                                         "stream": "ext://sys.stderr"}
        for handler in config["handlers"].values():
            handler["filters"] = list(context)
        config["root"] = {"level": level.upper(), "handlers": ["service"]}
    if settings.id_key is not None:
        config["filters"]["pseudonyms"] = {"()": PseudonymousAccessLog, "key": settings.id_key}
        config["loggers"]["uvicorn.access"]["filters"] = ["pseudonyms"]
    return config
