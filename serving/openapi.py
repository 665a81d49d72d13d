"""What the OpenAPI document says beyond what FastAPI derives from the routes: the errors each
operation can answer, in the service's one error shape (`errors.py`), with the conditions
that cause them.

The errors come from the middleware in front of every route (`guards.py`: the key, its
scope and rate, the work in flight, the body's type, size and time) and from the handlers
(`errors.py`: validation, Redis and Kafka down), so they are added here, from what each
operation has (a security requirement, parameters, a body), rather than route by route: a
new route is documented as it behaves.
"""

from collections.abc import Callable
from typing import Any

from fastapi import FastAPI
from pydantic import BaseModel, Field

ERROR_SCHEMA = "ErrorBody"
#: FastAPI's own validation error schemas, which the service never answers with.
FASTAPI_VALIDATION_SCHEMAS = ("HTTPValidationError", "ValidationError")


class ErrorBody(BaseModel):
    """The body of every error the service answers."""

    error: str = Field(description="What went wrong, for a person.")
    details: list[str] = Field(description="Which fields or records, and why; may be empty.")


RETRY_AFTER = {"Retry-After": {"description": "Seconds to wait before retrying.",
                               "schema": {"type": "integer"}}}

#: status -> (when it is answered, an example message, example details, response headers)
ERRORS: dict[int, tuple[str, str, list[str], dict[str, Any]]] = {
    401: ("No API key, or one the service does not know.",
          "send an API key: Authorization: Bearer <key> or X-API-Key", [],
          {"WWW-Authenticate": {"description": "Bearer", "schema": {"type": "string"}}}),
    403: ("The key does not have the scope this operation needs ({scope}).",
          "the key 'web' does not have the '{scope}' scope", [], {}),
    408: ("The body did not arrive whole within STREAMREC_BODY_TIMEOUT_SECONDS.",
          "the body took longer than 10s", [], {}),
    413: ("The body is larger than this endpoint's limit (STREAMREC_MAX_REQUEST_BYTES for "
          "events and items, STREAMREC_MAX_SMALL_REQUEST_BYTES otherwise), or holds more than "
          "STREAMREC_MAX_EVENTS_PER_REQUEST records.",
          "request body is 2000000 bytes; the limit is 1048576", [], {}),
    414: ("The query string is longer than the service reads (60 KiB: a thousand excluded "
          "ids of 60 characters).", "the query is longer than 61440 bytes", [], {}),
    415: ("The body is not sent as application/json.", "send the body as application/json",
          [], {}),
    422: ("A parameter or the body is invalid: each detail names the field (or record) and "
          "why. A POST of records is all-or-nothing: nothing was accepted.",
          "invalid request", ["query.n: Input should be less than or equal to 500"], {}),
    429: ("The key is past its rate (its own, or STREAMREC_RATE_LIMIT_PER_SECOND) or holds "
          "its share of the work in flight (STREAMREC_MAX_INFLIGHT_COST_PER_CALLER); retry after "
          "Retry-After.", "rate limit of the key 'web' reached; retry", [], RETRY_AFTER),
    503: ("The process is overloaded (more work in flight than STREAMREC_MAX_INFLIGHT_COST; "
          "refused at once, not queued), or Redis or Kafka is unreachable; retry after "
          "Retry-After.", "the recommendation store (Redis) is unavailable; retry",
          ["ConnectionError('Error 111 connecting to 127.0.0.1:6379. Connection refused.')"],
          RETRY_AFTER),
}


def statuses_of(operation: dict[str, Any]) -> list[int]:
    """The errors an operation can answer: a key, its scope, the query's size, its rate and
    the shared capacity for a protected one; type, size and time for a body; validation for
    input."""
    statuses = []
    if operation.get("security"):
        statuses += [401, 403, 414, 429, 503]
    if "requestBody" in operation:
        statuses += [408, 413, 415, 422]
    elif operation.get("parameters"):
        statuses.append(422)
    return sorted(statuses)


def required_scope(operation: dict[str, Any]) -> str | None:
    """The scope an operation needs, from its security requirement."""
    for requirement in operation.get("security", []):
        for scopes in requirement.values():
            if scopes:
                return scopes[0]
    return None


def error_response(status: int, scope: str | None) -> dict[str, Any]:
    when, message, details, headers = ERRORS[status]
    response: dict[str, Any] = {
        "description": when.format(scope=scope),
        "content": {"application/json": {
            "schema": {"$ref": f"#/components/schemas/{ERROR_SCHEMA}"},
            "example": {"error": message.format(scope=scope), "details": details}}},
    }
    if headers:
        response["headers"] = headers
    return response


def document_errors(document: dict[str, Any]) -> dict[str, Any]:
    """Add every operation's error responses (replacing FastAPI's own 422 shape, which the
    service never answers with) and the error schema."""
    for methods in document["paths"].values():
        for operation in methods.values():
            responses = operation.setdefault("responses", {})
            responses.pop("422", None)
            for status in statuses_of(operation):
                responses.setdefault(str(status), error_response(status,
                                                                 required_scope(operation)))
    schemas = document.setdefault("components", {}).setdefault("schemas", {})
    for name in FASTAPI_VALIDATION_SCHEMAS:
        schemas.pop(name, None)
    schemas[ERROR_SCHEMA] = ErrorBody.model_json_schema()
    return document


def install_openapi(app: FastAPI) -> None:
    """The app's document is FastAPI's, with `document_errors` applied once."""
    generate: Callable[[], dict[str, Any]] = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = document_errors(generate())
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def example(summary: str, value: Any) -> dict[str, dict[str, Any]]:
    """One named example, for a parameter's or a body's `openapi_examples`: what the docs
    page fills in, and what `tests/system/test_api_docs.py` sends expecting success."""
    return {summary: {"summary": summary, "value": value}}
