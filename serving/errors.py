"""Every error the service returns has one JSON shape: {"error": message, "details": [...]}."""

import asyncio
import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from redis import exceptions as redis_errors
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect

from .publisher import BrokerUnavailable
from .telemetry import REDIS_ERRORS

log = logging.getLogger(__name__)
RETRY_AFTER_SECONDS = "1"
PING_TIMEOUT_SECONDS = 0.25


class ApiError(Exception):
    def __init__(self, status: int, message: str, details: list[str] | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.details = details or []
        self.headers = headers


def error_body(message: str, details: list[Any] | None = None) -> dict[str, Any]:
    return {"error": message, "details": details or []}


def error_response(status: int, message: str, details: list[Any] | None = None,
                   headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(error_body(message, details), status_code=status, headers=headers)


def _describe(problem: dict[str, Any]) -> str:
    where = ".".join(str(part) for part in problem["loc"])
    return f"{where}: {problem['msg'].removeprefix('Value error, ')}"


async def answers(request: Request) -> bool:
    """Whether Redis answers a PING now: a timeout then means our load, not Redis down."""
    try:
        return bool(await asyncio.wait_for(
            request.app.state.recommender.reader.redis.ping(), PING_TIMEOUT_SECONDS))
    except (TimeoutError, redis_errors.RedisError):
        return False


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def api_error(_: Request, error: ApiError) -> JSONResponse:
        return error_response(error.status, error.message, error.details, error.headers)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(_: Request, error: RequestValidationError) -> JSONResponse:
        return error_response(422, "invalid request", [_describe(p) for p in error.errors()])

    @app.exception_handler(ClientDisconnect)
    async def gone(request: Request, _: ClientDisconnect) -> JSONResponse:
        """The client left while sending its body: nobody reads this answer, and it is not
        the service's error (no traceback in the log)."""
        route = request.scope.get("route")  # its template: no id from the URL in the log
        log.info("client left during %s %s", request.method, getattr(route, "path", "?"))
        return error_response(400, "the client disconnected")

    @app.exception_handler(HTTPException)
    async def http_error(_: Request, error: HTTPException) -> JSONResponse:
        return error_response(error.status_code, str(error.detail), [], error.headers)

    @app.exception_handler(redis_errors.ConnectionError)
    @app.exception_handler(redis_errors.TimeoutError)
    @app.exception_handler(redis_errors.BusyLoadingError)
    async def redis_down(request: Request, error: Exception) -> JSONResponse:
        REDIS_ERRORS.inc()
        if isinstance(error, redis_errors.TimeoutError) and await answers(request):
            return error_response(503, "overloaded: the store answers, this request waited "
                                  "too long; retry", [repr(error)],
                                  {"Retry-After": RETRY_AFTER_SECONDS})
        return error_response(503, "the recommendation store (Redis) is unavailable; retry",
                              [repr(error)], {"Retry-After": RETRY_AFTER_SECONDS})

    @app.exception_handler(BrokerUnavailable)
    async def broker_down(_: Request, error: BrokerUnavailable) -> JSONResponse:
        return error_response(503, "the event broker (Kafka) is unavailable; retry",
                              [str(error)], {"Retry-After": RETRY_AFTER_SECONDS})
