"""The HTTP service: FastAPI on uvicorn, reading Redis, producing to Kafka."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from streamrec import __version__
from streamrec.contract import RedisKeys, Settings

from . import routes
from .errors import install_error_handlers
from .profiles import Profiles
from .publisher import EventPublisher
from .recommender import Recommender
from .state_reader import StateReader


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
        app.state.recommender = Recommender(StateReader(redis, RedisKeys(settings.key_prefix)),
                                            settings)
        app.state.publisher = publisher
        app.state.profiles = Profiles(redis, RedisKeys(settings.key_prefix))
        try:
            yield
        finally:
            await publisher.close()
            await redis.aclose()

    app = FastAPI(title="streamrec", version=__version__, lifespan=lifespan,
                  description="Real-time recommendations learned from event streams.")
    install_error_handlers(app)
    for router in (routes.users, routes.sessions, routes.items, routes.trending, routes.events,
                   routes.metrics, routes.health):
        app.include_router(router)
    return app


def run_service(settings: Settings, log_level: str = "info") -> None:
    import uvicorn

    uvicorn.run(create_app(settings), host=settings.http_host, port=settings.http_port,
                log_level=log_level, timeout_graceful_shutdown=10)
