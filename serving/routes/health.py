from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from redis import exceptions as redis_errors

from ..dependencies import PublisherDep

router = APIRouter(tags=["health"])


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """The process is up."""
    return {"status": "ok"}


class Readiness(BaseModel):
    status: str = Field(description="'ready' or 'unavailable'.")
    redis: bool
    kafka: bool
    stalled: dict[str, str] = Field(
        description="Partitions (topic:partition) the worker cannot apply, and why.")


@router.get("/readyz", response_model=Readiness, responses={503: {
    "model": Readiness, "description": "Redis or Kafka unreachable, or a partition stalled."}})
async def readyz(request: Request, publisher: PublisherDep) -> JSONResponse:
    """Redis and Kafka are reachable and the worker applies every partition: 200, else 503
    naming what is not (`stalled`: partitions the worker cannot apply, and why)."""
    reader = request.app.state.recommender.reader
    try:
        stalled = await reader.stalled_partitions()
        redis_ok = True
    except (redis_errors.ConnectionError, redis_errors.TimeoutError):
        stalled, redis_ok = {}, False
    kafka_ok = await publisher.ready()
    ready = redis_ok and kafka_ok and not stalled
    return JSONResponse({"status": "ready" if ready else "unavailable",
                         "redis": redis_ok, "kafka": kafka_ok, "stalled": stalled},
                        status_code=200 if ready else 503)
