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
    pseudonym_key: bool = Field(description="This service pseudonymises user ids with the "
                                "key the state was learned under (or none, as it was).")


@router.get("/readyz", response_model=Readiness, responses={503: {
    "model": Readiness, "description": "Redis or Kafka unreachable, a partition stalled, or "
    "another pseudonym key than the state's."}})
async def readyz(request: Request, publisher: PublisherDep) -> JSONResponse:
    """Redis and Kafka are reachable, the worker applies every partition and this service's
    pseudonym key is the state's: 200, else 503 naming what is not (`stalled`: partitions the
    worker cannot apply, and why)."""
    reader = request.app.state.recommender.reader
    fingerprint = request.app.state.settings.id_hmac_key_fingerprint
    try:
        stalled = await reader.stalled_partitions()
        same_key = not await reader.learned_under_other_pseudonym_key(fingerprint)
        redis_ok = True
    except (redis_errors.ConnectionError, redis_errors.TimeoutError):
        stalled, same_key, redis_ok = {}, True, False
    kafka_ok = await publisher.ready()
    ready = redis_ok and kafka_ok and not stalled and same_key
    return JSONResponse({"status": "ready" if ready else "unavailable",
                         "redis": redis_ok, "kafka": kafka_ok, "stalled": stalled,
                         "pseudonym_key": same_key},
                        status_code=200 if ready else 503)
