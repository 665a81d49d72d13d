"""The HTTP service: FastAPI on uvicorn, reading Redis, producing to Kafka."""

import asyncio
import contextlib
import gc
import logging
import os
import signal
import sys
import tempfile
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi_offline import FastAPIOffline
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from streamrec import __version__
from streamrec.contract import AttributionSecret, RedisKeys, Settings, load_keys

from . import routes
from .auth import Auth, KeyRing, RateLimiter
from .dashboard import DashboardSeries
from .errors import install_error_handlers
from .experiments import Experiments
from .guards import BodyGuard, Gate
from .header_deadline import PROTOCOL, set_header_deadline
from .openapi import install_openapi
from .profiles import Profiles
from .publisher import EventPublisher
from .recommender import RecommendationList, Recommender
from .state_reader import StateReader
from .telemetry import RequestTelemetry, service_logging_config

log = logging.getLogger(__name__)


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # No retries: a request must fail fast (503) when Redis is down, not hang.
        redis = Redis.from_url(
            settings.redis_url, socket_timeout=settings.redis_timeout_seconds,
            socket_connect_timeout=settings.redis_timeout_seconds,
            retry=Retry(NoBackoff(), retries=0), max_connections=256,
        )
        publisher = EventPublisher(settings.kafka_bootstrap_servers)
        app.state.settings = settings
        reader = StateReader(redis, RedisKeys(settings.key_prefix))
        app.state.recommender = Recommender(reader, settings)
        app.state.dashboard = DashboardSeries(reader, settings, list_routes(app))
        sampling = asyncio.create_task(app.state.dashboard.sample_forever())
        app.state.publisher = publisher
        app.state.attribution = AttributionSecret(redis, RedisKeys(settings.key_prefix))
        app.state.experiments = Experiments(redis, RedisKeys(settings.key_prefix))
        app.state.profiles = Profiles(redis, RedisKeys(settings.key_prefix),
                                      settings.user_state_ttl_days * 86400)
        app.state.auth = auth_from(settings)
        if app.state.auth is None:
            log.warning("STREAMREC_AUTH=disabled: anyone who reaches this port may do anything")
        else:
            asyncio.get_running_loop().add_signal_handler(signal.SIGHUP,
                                                          app.state.auth.keys.reload)
        # What startup built (the framework's routes and schemas, the models: most of the
        # heap, and it lives as long as the process) leaves the collector's reach: a full
        # collection then scans only what requests left. Before, each one paused the
        # process for ~50 ms, and a caller asking for long lists made them frequent.
        gc.collect()
        gc.freeze()
        try:
            yield
        finally:
            sampling.cancel()
            await publisher.close()
            await redis.aclose()

    # The docs pages (/docs: Swagger UI, /redoc) load their scripts and styles from the
    # fastapi-offline wheel, served here: they render without internet access.
    app = FastAPIOffline(title="streamrec", version=__version__, lifespan=lifespan,
                         description="Real-time recommendations learned from event streams.",
                         static_url=DOCS_ASSETS)
    install_error_handlers(app)
    install_openapi(app)
    for router in (routes.users, routes.sessions, routes.items, routes.trending, routes.events,
                   routes.metrics, routes.experiments, routes.erasures, routes.health,
                   routes.dashboard):
        app.include_router(router)
    if settings.metrics == "enabled":
        app.include_router(routes.prometheus)
    # Added last runs first: timing and request ids around everything, then CORS, then the
    # body's size and type, then who and how much.
    app.add_middleware(Gate, capacity=settings.max_inflight_cost,
                       share=settings.max_inflight_cost_per_caller, is_open=is_open,
                       over_limit_delay=settings.over_limit_delay_seconds)
    app.add_middleware(BodyGuard, limit_for=body_limits(settings),
                       timeout_seconds=settings.body_timeout_seconds)
    if settings.cors_allowed_origins:
        app.add_middleware(CORSMiddleware, allow_origins=settings.cors_allowed_origins,
                           allow_methods=["GET", "POST", "PUT"],
                           allow_headers=["Content-Type", "Authorization"])
    app.add_middleware(RequestTelemetry, observe=settings.metrics == "enabled")
    return app


def app_from_environment() -> FastAPI:
    """The app of one of several service processes (uvicorn imports it by name)."""
    settings = Settings()
    set_header_deadline(settings.header_timeout_seconds)
    return create_app(settings)


#: Open to anyone: health for probes, the API document and its pages and the dashboard's
#: page (which ask for a key), with the docs' scripts and styles.
OPEN_PATHS = frozenset({"/healthz", "/readyz", "/metrics", "/openapi.json", "/docs",
                        "/docs/oauth2-redirect", "/redoc", "/dashboard"})
DOCS_ASSETS = "/docs/assets"


def is_open(path: str) -> bool:
    return path in OPEN_PATHS or path.startswith(f"{DOCS_ASSETS}/")
#: Paths whose bodies are batches of records (up to STREAMREC_MAX_REQUEST_BYTES).
INGEST_PATHS = frozenset({"/v1/events", "/v1/items"})


def list_routes(app: FastAPI) -> set[str]:
    """The path templates of the routes that answer with a recommendation list (from the
    OpenAPI document, which names every route of every router)."""
    answer = {"$ref": f"#/components/schemas/{RecommendationList.__name__}"}
    return {path for path, operations in app.openapi()["paths"].items()
            for operation in operations.values()
            if operation["responses"].get("200", {}).get("content", {})
            .get("application/json", {}).get("schema") == answer}


def body_limits(settings: Settings) -> Callable[[str], int]:
    def limit_for(path: str) -> int:
        if path.rstrip("/") in INGEST_PATHS:
            return settings.max_request_bytes
        return settings.max_small_request_bytes

    return limit_for


def auth_from(settings: Settings) -> Auth | None:
    """The keys and the limiter; None when auth is disabled (everyone may do anything)."""
    if settings.auth == "disabled":
        return None
    keys = KeyRing(settings.api_keys_file)
    keys.reload()
    return Auth(keys, RateLimiter(settings.rate_limit_per_second, settings.rate_limit_burst))


def refusal(settings: Settings) -> str | None:
    """Why the service must not start (secure by default), or None."""
    if settings.auth == "disabled":
        return None
    if settings.api_keys_file is None:
        return ("streamrec serve: no API keys: set STREAMREC_API_KEYS_FILE (create a key with "
                "`streamrec keys create --name NAME --scopes read,write`), or "
                "STREAMREC_AUTH=disabled to let anyone do anything")
    if not load_keys(settings.api_keys_file).keys:
        return (f"streamrec serve: {settings.api_keys_file} holds no API key: create one with "
                "`streamrec keys create --name NAME --scopes read,write`")
    return None


def run_service(settings: Settings, log_level: str = "info") -> None:
    import uvicorn

    if (reason := refusal(settings)) is not None:
        sys.exit(reason)

    options = {"host": settings.http_host, "port": settings.http_port, "log_level": log_level,
               "log_config": service_logging_config(settings, log_level),
               "timeout_graceful_shutdown": 10, "http": PROTOCOL}
    if settings.http_processes == 1:
        set_header_deadline(settings.header_timeout_seconds)
        uvicorn.run(create_app(settings), **options)
        return
    os.environ.update(settings.as_environment())  # the processes read these same settings
    with shared_metrics_directory():
        uvicorn.run("serving.app:app_from_environment", factory=True,
                    workers=settings.http_processes, **options)


@contextlib.contextmanager
def shared_metrics_directory() -> Iterator[str]:
    """PROMETHEUS_MULTIPROC_DIR as given (emptied of an earlier run's metrics, which would
    add up with this one's), else a new temporary one for this run; set before the service
    processes start (they choose their metrics' storage on import)."""
    if given := os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        for earlier in Path(given).glob("*.db"):
            earlier.unlink()
        yield given
        return
    with tempfile.TemporaryDirectory(prefix="streamrec-metrics-") as directory:
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = directory
        yield directory
