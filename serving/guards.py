"""What every request passes before a route sees it: bounded bodies and bounded work.

Pure ASGI middleware (no per-request task or buffering of its own):
- `BodyGuard`: a JSON endpoint's body must say it is JSON (415 otherwise: a browser form
  cannot post events cross-site), may not exceed its path's limit (413, answered before
  reading when Content-Length says so, then the rest of the body is drained briefly so the
  client reads the answer instead of a reset), and must arrive whole within the body
  timeout (408; a body dripped a byte at a time cannot hold a connection).
- `Gate`: the caller's key is checked before any work (401, and 429 past its rate); the
  work in flight is bounded per caller and in total, each request weighted by its cost (a
  list of 500 costs more than a list of 10); past a bound a request is refused at once
  (429 for the caller's share, 503 "overloaded" for the whole), so light requests are not
  starved and no queue builds where requests would time out after waiting.
"""

import asyncio
import contextlib
import json
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import parse_qs

import orjson
from pydantic import TypeAdapter, ValidationError
from starlette.exceptions import HTTPException

from streamrec.contract import DEFAULT_LIST_LENGTH, MAX_LIST_LENGTH

from .auth import EVERYONE
from .errors import RETRY_AFTER_SECONDS, ApiError, error_body

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
#: A personalised list (a user's or a session's) costs 1 + PERSONALISED_COST + n /
#: PERSONALISED_LIST_COST_UNIT instead: its script scores the rows of up to 20 voters, deeper
#: for a longer list. So a unit is about the same share of a process whatever the request:
#: on bench/run.py's dense state one process saturated at about 2,000 trending n=10 lists a
#: second, 215-250 personalised n=10 (8.6 units; costed 8), 129-149 n=50 (14; 12) and 99
#: n=100 (20; 17), 50-57 n=500 (37; 57).
PERSONALISED_COST = 6
PERSONALISED_LIST_COST_UNIT = 10
BODY_COST_UNIT = 64 * 1024
MAX_COSTED_BODY_BYTES = 1024 * 1024
#: A caller is alone when no other caller holds work in flight or asked for any (admitted or
#: not) within this many seconds; a share only matters when someone else is there to be
#: crowded out.
ALONE_AFTER_SECONDS = 1.0
#: A request that would take its caller past its share waits this long at most for the
#: caller's own work to finish (at most MAX_WAITING_PER_CALLER of a caller's requests at
#: once, and none of a caller refused within the hold-back delay); then 429, held back like
#: any repeat refusal. A client's momentary burst goes through a few milliseconds late
#: instead of failing, and waiting holds no share of the work; once admitted, the request
#: still needs room in the process (503 if not).
SHARE_WAIT_SECONDS = 0.1
MAX_WAITING_PER_CALLER = 2


async def refuse(send: Send, receive: Receive, status: int, message: str,
                 headers: dict[str, str] | None = None) -> None:
    """Answer in the service's one error shape from outside any route, then read (bounded)
    what the client is still sending, so that it gets to read the answer."""
    body = orjson.dumps(error_body(message))
    raw_headers = [(b"content-type", b"application/json"),
                   (b"content-length", str(len(body)).encode())]
    raw_headers += [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": raw_headers})
    await send({"type": "http.response.body", "body": body})
    deadline, drained = time.monotonic() + DRAIN_SECONDS, 0
    with contextlib.suppress(TimeoutError, HTTPException):  # HTTPException: BodyGuard gave up
        while drained < DRAIN_BYTES:
            left = deadline - time.monotonic()
            if left <= 0:
                return
            message_in = await asyncio.wait_for(receive(), left)
            if message_in["type"] != "http.request" or not message_in.get("more_body"):
                return
            drained += len(message_in.get("body", b""))


def header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key == name:
            return value.decode("latin-1")
    return None


#: A Content-Length with more digits than this (after leading zeros) is read as this many
#: bytes' worth: more than any limit, without converting thousands of digits.
_MOST_LENGTH_DIGITS = 15


def declared_length(scope: Scope) -> int | None:
    """The body length a request declares: None when it declares none; ValueError when it
    is not a number of bytes in ASCII digits."""
    declared = header(scope, b"content-length")
    if declared is None:
        return None
    if not (declared.isascii() and declared.isdigit()):
        raise ValueError(f"Content-Length {declared[:40]!r} is not a number of bytes")
    digits = declared.lstrip("0") or "0"
    return int(digits) if len(digits) <= _MOST_LENGTH_DIGITS else 10 ** _MOST_LENGTH_DIGITS


def _bodyless(scope: Scope) -> bool:
    """A request that says it has no body (Content-Length 0, or neither it nor chunks)."""
    declared = header(scope, b"content-length")
    return declared == "0" or (declared is None and header(scope, b"transfer-encoding") is None)


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
        if not content_type and _bodyless(scope):  # e.g. POST /v1/experiments/{name}/stop
            return await self.app(scope, receive, send)
        if content_type != "application/json":
            return await refuse(send, receive, 415, "send the body as application/json")
        try:
            declared = declared_length(scope)
        except ValueError:
            return await refuse(send, receive, 400, "Content-Length must be a number of bytes")
        if declared is not None and declared > limit:
            return await refuse(send, receive, 413, f"request body is {declared} bytes; the "
                                f"limit is {limit}")
        received, deadline = 0, time.monotonic() + self.timeout

        async def bounded_receive() -> Message:
            nonlocal received
            try:
                message = await asyncio.wait_for(receive(), deadline - time.monotonic())
            except TimeoutError:
                raise HTTPException(408, f"the body took longer than {self.timeout:.0f}s"
                                    ) from None
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise HTTPException(413, f"request body exceeds the limit of {limit} bytes")
            return message

        await self.app(scope, bounded_receive, send)


#: The longest query string accepted (414 past it): room for the most ids a list may
#: exclude, not for a megabyte of them to parse.
MAX_QUERY_BYTES = 60 * 1024
#: Where a list's n comes in the JSON body, not the query.
LIST_IN_BODY_PATHS = frozenset({"/v1/sessions/recommendations"})


_AN_INT = TypeAdapter(int)
#: More distinct values of n than this in one query are charged as the longest list, unread.
MAX_COSTED_N_VALUES = 16


def _asked_n(values: list[object]) -> int:
    """The longest list asked for among `values` (a repeated parameter counts at its
    largest; each read as the routes read it, so `500.0` or `+500` is 500), counted up to
    what the service serves (past it the route answers 422); the default length when none
    is given."""
    distinct = {repr(value): value for value in values if value is not None}
    if len(distinct) > MAX_COSTED_N_VALUES:
        return MAX_LIST_LENGTH
    asked = []
    for value in distinct.values():
        with contextlib.suppress(ValidationError):
            asked.append(_AN_INT.validate_python(value))
    return max(0, min(max(asked, default=DEFAULT_LIST_LENGTH), MAX_LIST_LENGTH))


def request_cost(scope: Scope, body_n: object = None) -> int:
    """How much of the process a request may take, in units of one light request (n and the
    body are counted up to what the service would accept, so an absurd request is refused
    for what it is, 422 or 413, not as overload; a chunked body, whose length is not
    declared, at the most). `body_n`: the n of a list asked for in the body."""
    query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
    n = _asked_n([*query.get("n", []), body_n])
    if scope["path"].endswith("/recommendations"):
        cost = 1 + PERSONALISED_COST + n // PERSONALISED_LIST_COST_UNIT
    else:
        cost = 1 + n // LIST_COST_UNIT
    try:
        declared = declared_length(scope)
    except ValueError:  # BodyGuard answers 400
        declared = None
    if declared is None and header(scope, b"transfer-encoding") is not None:
        declared = MAX_COSTED_BODY_BYTES
    if declared:
        cost += min(declared, MAX_COSTED_BODY_BYTES) // BODY_COST_UNIT
    return cost


async def buffered(receive: Receive) -> tuple[bytes, Receive]:
    """The whole body, and a `receive` that hands it to the app again as one message."""
    chunks = []
    while True:
        message = await receive()
        chunks.append(message.get("body", b""))
        if message["type"] != "http.request" or not message.get("more_body"):
            break
    body = b"".join(chunks)
    replayed = False

    async def replay() -> Message:
        nonlocal replayed
        if replayed:
            return await receive()
        replayed = True
        return {"type": "http.request", "body": body, "more_body": False}

    return body, replay


def listed_n_in(body: bytes) -> object:
    """The `n` a JSON body asks for, parsed as the route parses it (Starlette's `json.loads`,
    which also reads UTF-16 and a byte-order mark); None when it is not a JSON object: the
    route says why."""
    with contextlib.suppress(ValueError, RecursionError):
        parsed = json.loads(body)
        if isinstance(parsed, dict):
            return parsed.get("n")
    return None


def presented_key(scope: Scope) -> str | None:
    authorization = header(scope, b"authorization") or ""
    scheme, _, credentials = authorization.partition(" ")
    if scheme.lower() == "bearer" and credentials.strip():
        return credentials.strip()
    return header(scope, b"x-api-key")


class Gate:
    """Before any route: who is calling (401 for no or an unknown key, 429 past the key's
    rate, charged the request's whole cost), and how much of the process they may hold. Each
    caller holds at most `share` units of work in flight (429 past it; one holding nothing
    may send one request that costs more, which holds at most `capacity`) and all together
    at most `capacity` (503 overloaded past it, at once) unless the caller holds less than
    its fair part of it, so flooding keys cannot lock out a light one. A caller alone (see
    `ALONE_AFTER_SECONDS`: one app's key, say) has the whole capacity as its share, as no one
    else is there; once another asks, admitted or not, the first is held to its share again
    for new work (what it holds finishes), and the other is admitted within its fair part.
    Checking the key here, before any work (costing a request included), makes a request
    without a valid key cost almost nothing.

    A request past its caller's share first waits a little for the caller's own work to
    finish (`SHARE_WAIT_SECONDS`). A caller refused (429) again within `over_limit_delay`
    seconds gets that answer after that delay (at most its Retry-After; up to `MAX_DELAYED`
    answers wait at once, the rest go at once): a client that ignores Retry-After and retries
    in a loop then costs one cheap answer per connection per delay instead of thousands a
    second of the process everyone shares, and a client that is refused once hears it at
    once."""

    MAX_DELAYED = 1024

    def __init__(self, app: App, *, capacity: int, share: int,
                 is_open: Callable[[str], bool], over_limit_delay: float,
                 alone_after: float = ALONE_AFTER_SECONDS,
                 share_wait: float = SHARE_WAIT_SECONDS) -> None:
        self.app = app
        self.capacity = capacity
        self.share = min(share, capacity)
        self.is_open = is_open
        self.over_limit_delay = over_limit_delay
        self.in_flight = 0
        self.in_flight_by: dict[str, int] = {}
        self.delayed = 0
        self.refused_at: dict[str, float] = {}  # who -> when last refused (429)
        self.alone_after = alone_after
        #: (caller, when) of the latest request past the key check and of the latest by
        #: another caller than that one
        self.asked: list[tuple[str, float]] = []
        self.share_wait = share_wait
        self.waiting: dict[str, int] = {}  # who -> requests waiting for their own work
        self.released: dict[str, asyncio.Event] = {}  # set when who's work in flight shrinks

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or self.is_open(scope["path"]):
            return await self.app(scope, receive, send)
        if len(scope.get("query_string", b"")) > MAX_QUERY_BYTES:
            return await refuse(send, receive, 414, f"the query is longer than "
                                f"{MAX_QUERY_BYTES} bytes")
        auth = scope["app"].state.auth
        body_n = None
        presented = presented_key(scope)
        if (scope["path"] in LIST_IN_BODY_PATHS and scope["method"] == "POST"
                and (auth is None or (presented and auth.keys.find(presented)))):
            # read only for a known key (an unknown one gets its 401 unread, as elsewhere),
            # bounded by BodyGuard: the path's size limit and the body timeout
            try:
                body, receive = await buffered(receive)
            except HTTPException as refused:
                return await refuse(send, receive, refused.status_code, str(refused.detail))
            body_n = listed_n_in(body)
        if auth is None:  # STREAMREC_AUTH=disabled: one share per client address
            caller, holder = EVERYONE, f"address {(scope.get('client') or ('?',))[0]}"
            asked = request_cost(scope, body_n)
        else:
            try:
                caller = auth.identify(presented)
                asked = request_cost(scope, body_n)  # once the key is known to be valid
                # Charged before the checks below: a refusal costs the key too, or a flood
                # retrying through 503s would spend its whole rate on admitted long lists.
                auth.charge(caller, asked)
            except ApiError as refused:
                if refused.status == 429:
                    await self.hold_back(f"key {presented}",
                                         float(refused.headers["Retry-After"]))
                return await refuse(send, receive, refused.status, refused.message,
                                    refused.headers)
            holder = caller.name
        cost = min(asked, self.capacity)  # what it holds of the process while in flight
        scope.setdefault("state", {})["caller"] = caller
        now = time.monotonic()
        past_share = self.past_share(holder, cost, now)
        # Asking is being there, admitted or not: a caller refused as the process is full
        # must not leave the one filling it alone.
        self.note_asked(holder, now)
        if past_share and not await self.own_work_finished(holder, cost):
            await self.hold_back(holder, float(RETRY_AFTER_SECONDS))
            return await refuse(send, receive, 429,
                                "too much work in flight for this caller; retry",
                                {"Retry-After": RETRY_AFTER_SECONDS})
        held = self.in_flight_by.get(holder, 0)
        if self.in_flight + cost > self.capacity and held + cost > self.fair_part(holder):
            return await refuse(send, receive, 503,
                                "overloaded: too much work in flight; retry",
                                {"Retry-After": RETRY_AFTER_SECONDS})
        self.in_flight += cost
        self.in_flight_by[holder] = held + cost
        try:
            await self.app(scope, receive, send)
        finally:
            self.in_flight -= cost
            left = self.in_flight_by[holder] - cost
            if left:
                self.in_flight_by[holder] = left
            else:
                del self.in_flight_by[holder]
            if (released := self.released.get(holder)) is not None:
                released.set()

    def past_share(self, holder: str, cost: int, now: float) -> bool:
        """Whether `cost` more would take the caller past its share: the whole capacity when
        it is alone; holding nothing, one request may go past it."""
        held = self.in_flight_by.get(holder, 0)
        share = self.capacity if self.alone(holder, now) else self.share
        return bool(held) and held + cost > share

    async def own_work_finished(self, holder: str, cost: int) -> bool:
        """Waits, at most `share_wait` and for at most MAX_WAITING_PER_CALLER of the caller's
        requests at once, until its own work in flight leaves room for `cost`. A caller
        refused within `over_limit_delay` does not wait: a burst is waited for, a sustained
        excess (a flood keeping its share full) is refused as before."""
        refused = self.refused_at.get(holder)
        if (self.waiting.get(holder, 0) >= MAX_WAITING_PER_CALLER
                or (refused is not None and time.monotonic() - refused <= self.over_limit_delay)):
            return False
        deadline = time.monotonic() + self.share_wait
        released = self.released.setdefault(holder, asyncio.Event())
        self.waiting[holder] = self.waiting.get(holder, 0) + 1
        try:
            while self.past_share(holder, cost, time.monotonic()):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                released.clear()
                # waited inline (not through wait_for's task, which registers a step late
                # and could miss a set() between another waiter's clear() and its wait)
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(remaining):
                        await released.wait()
            return True
        finally:
            self.waiting[holder] -= 1
            if not self.waiting[holder]:
                del self.waiting[holder], self.released[holder]

    def alone(self, holder: str, now: float) -> bool:
        """No other caller holds work or asked within `alone_after` seconds."""
        if len(self.in_flight_by) > (holder in self.in_flight_by):
            return False
        other = next((when for who, when in self.asked if who != holder), None)
        return other is None or now - other > self.alone_after

    def note_asked(self, holder: str, now: float) -> None:
        """Keeps the latest request and the latest by a caller other than its one: the
        latest by anyone other than a given caller is always one of these two."""
        if self.asked and self.asked[0][0] == holder:
            self.asked[0] = (holder, now)
        else:
            self.asked = [(holder, now), *self.asked[:1]]

    def fair_part(self, holder: str) -> int:
        """The capacity shared equally among the callers with work in flight, this one
        counted: a caller holding less is admitted even when the process is full, so a few
        heavy callers cannot keep a light one out (each such admission is bounded by its fair
        part when it asks; as callers come and go, the sum can pass twice the capacity)."""
        callers = len(self.in_flight_by) + (holder not in self.in_flight_by)
        return self.capacity // callers

    async def hold_back(self, who: str, retry_after: float) -> None:
        """Before a 429 to a caller refused less than `over_limit_delay` ago (one retrying in
        a loop; a first refusal goes at once), wait, holding no share of the work, while
        few others wait."""
        now = time.monotonic()
        previous = self.refused_at.get(who)
        if len(self.refused_at) >= self.MAX_DELAYED:  # bounded: forget the old refusals
            self.refused_at.clear()
        self.refused_at[who] = now
        if previous is None or now - previous > self.over_limit_delay:
            return
        if self.delayed >= self.MAX_DELAYED:
            return
        self.delayed += 1
        try:
            await asyncio.sleep(min(self.over_limit_delay, retry_after))
        finally:
            self.delayed -= 1
