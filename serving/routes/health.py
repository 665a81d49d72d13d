from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from redis import exceptions as redis_errors

from ..dependencies import PublisherDep

router = APIRouter(tags=["health"])


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """The process is up."""
    return {"status": "ok"}


@router.get("/readyz")
async def readyz(request: Request, publisher: PublisherDep) -> JSONResponse:
    """Redis and Kafka are reachable: 200, else 503 naming what is not."""
    try:
        redis_ok = bool(await request.app.state.recommender.reader.redis.ping())
    except (redis_errors.ConnectionError, redis_errors.TimeoutError):
        redis_ok = False
    kafka_ok = await publisher.ready()
    ready = redis_ok and kafka_ok
    return JSONResponse({"status": "ready" if ready else "unavailable",
                         "redis": redis_ok, "kafka": kafka_ok},
                        status_code=200 if ready else 503)
