"""Every error the service returns has one JSON shape: {"error": message, "details": [...]}."""

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from redis import exceptions as redis_errors

from .publisher import BrokerUnavailable

RETRY_AFTER_SECONDS = "1"


class ApiError(Exception):
    def __init__(self, status: int, message: str, details: list[str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.details = details or []


def error_response(status: int, message: str, details: list[Any] | None = None,
                   headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": message, "details": details or []}, status_code=status,
                        headers=headers)


def _describe(problem: dict[str, Any]) -> str:
    where = ".".join(str(part) for part in problem["loc"])
    return f"{where}: {problem['msg'].removeprefix('Value error, ')}"


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def api_error(_: Request, error: ApiError) -> JSONResponse:
        return error_response(error.status, error.message, error.details)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(_: Request, error: RequestValidationError) -> JSONResponse:
        return error_response(422, "invalid request", [_describe(p) for p in error.errors()])

    @app.exception_handler(redis_errors.ConnectionError)
    @app.exception_handler(redis_errors.TimeoutError)
    @app.exception_handler(redis_errors.BusyLoadingError)
    async def redis_down(_: Request, error: Exception) -> JSONResponse:
        return error_response(503, "the recommendation store (Redis) is unavailable; retry",
                              [repr(error)], {"Retry-After": RETRY_AFTER_SECONDS})

    @app.exception_handler(BrokerUnavailable)
    async def broker_down(_: Request, error: BrokerUnavailable) -> JSONResponse:
        return error_response(503, "the event broker (Kafka) is unavailable; retry",
                              [str(error)], {"Retry-After": RETRY_AFTER_SECONDS})
