"""What every request passes before a route sees it: bounded bodies and bounded work.

Pure ASGI middleware (no per-request task or buffering of its own):
- `BodyGuard`: a JSON endpoint's body must say it is JSON (415 otherwise: a browser form
  cannot post events cross-site), may not exceed its path's limit (413, answered before
  reading when Content-Length says so, then the rest of the body is drained briefly so the
  client reads the answer instead of a reset), and must keep arriving (408 when a chunk
  takes longer than the body timeout).
- `AdmissionControl`: the work in flight in this process is bounded, each request weighted
  by its cost (a list of 500 costs more than a list of 10); past the bound a request is
  refused at once with 503 "overloaded" and Retry-After, so light requests are not starved
  and a queue never builds where requests would time out after waiting.
"""

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import parse_qs

import orjson
from starlette.exceptions import HTTPException

from .errors import RETRY_AFTER_SECONDS, error_body

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
App = Callable[[Scope, Receive, Send], Awaitable[None]]

#: After refusing a body, read (and drop) at most this much of it, for at most this long.
DRAIN_BYTES = 16 * 1024 * 1024
DRAIN_SECONDS = 1.0
#: A list endpoint's cost is 1 + n / LIST_COST_UNIT; a body's 1 + bytes / BODY_COST_UNIT.
LIST_COST_UNIT = 50
BODY_COST_UNIT = 64 * 1024


async def send_error(send: Send, status: int, message: str,
                     headers: dict[str, str] | None = None) -> None:
    """The service's one error shape, from outside any route."""
    body = orjson.dumps(error_body(message))
    raw_headers = [(b"content-type", b"application/json"),
                   (b"content-length", str(len(body)).encode())]
    raw_headers += [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": raw_headers})
    await send({"type": "http.response.body", "body": body})


def header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key == name:
            return value.decode("latin-1")
    return None


class BodyGuard:
    def __init__(self, app: App, *, limit_for: Callable[[str], int],
                 timeout_seconds: float) -> None:
        self.app = app
        self.limit_for = limit_for
        self.timeout = timeout_seconds

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in ("POST", "PUT", "PATCH"):
            return await self.app(scope, receive, send)
        limit = self.limit_for(scope["path"])
        content_type = (header(scope, b"content-type") or "").split(";")[0].strip().lower()
        if content_type != "application/json":
            await send_error(send, 415, "send the body as application/json")
            return await self.drain(receive)
        declared = header(scope, b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > limit):
            await send_error(send, 413 if declared.isdigit() else 400,
                             f"request body is {declared} bytes; the limit is {limit}"
                             if declared.isdigit() else "Content-Length must be a number")
            return await self.drain(receive)
        received = 0

        async def bounded_receive() -> Message:
            nonlocal received
            try:
                message = await asyncio.wait_for(receive(), self.timeout)
            except TimeoutError:
                raise HTTPException(408, f"the body stalled for {self.timeout:.0f}s") from None
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise HTTPException(413, f"request body exceeds the limit of {limit} bytes")
            return message

        await self.app(scope, bounded_receive, send)

    @staticmethod
    async def drain(receive: Receive) -> None:
        """Read what the client is still sending (bounded), so it gets to read our answer."""
        deadline, drained = time.monotonic() + DRAIN_SECONDS, 0
        with contextlib.suppress(TimeoutError):
            while drained < DRAIN_BYTES:
                left = deadline - time.monotonic()
                if left <= 0:
                    return
                message = await asyncio.wait_for(receive(), left)
                if message["type"] != "http.request" or not message.get("more_body"):
                    return
                drained += len(message.get("body", b""))


def request_cost(scope: Scope) -> int:
    """How much of the process a request may take, in units of one light request."""
    cost = 1
    query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
    with contextlib.suppress(ValueError, IndexError):
        cost += int(query.get("n", ["0"])[0]) // LIST_COST_UNIT
    declared = header(scope, b"content-length")
    if declared and declared.isdigit():
        cost += int(declared) // BODY_COST_UNIT
    return max(1, cost)


class AdmissionControl:
    def __init__(self, app: App, *, capacity: int, exempt: frozenset[str]) -> None:
        self.app = app
        self.capacity = capacity
        self.exempt = exempt
        self.in_flight = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in self.exempt:
            return await self.app(scope, receive, send)
        cost = min(request_cost(scope), self.capacity)
        if self.in_flight + cost > self.capacity:
            await send_error(send, 503, "overloaded: too much work in flight; retry",
                             {"Retry-After": RETRY_AFTER_SECONDS})
            return await BodyGuard.drain(receive)
        self.in_flight += cost
        try:
            await self.app(scope, receive, send)
        finally:
            self.in_flight -= cost
