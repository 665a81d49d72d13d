"""The gate's admission rules, driven through its ASGI interface with requests held in
flight: each caller's share, the process's capacity, and the fair part of it that lets a
light caller in while heavy ones fill the process."""

import asyncio
from types import SimpleNamespace

from serving.guards import Gate, listed_n_in, request_cost

CAPACITY, SHARE = 4, 2


class Held:
    """An app whose requests stay in flight until released."""

    def __init__(self) -> None:
        self.release = asyncio.Event()

    async def __call__(self, scope: dict, receive: object, send: object) -> None:
        await self.release.wait()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b""})


def request_from(address: str, query: bytes = b"") -> dict:
    return {"type": "http", "path": "/v1/trending", "query_string": query, "headers": [],
            "client": (address, 1), "app": SimpleNamespace(state=SimpleNamespace(auth=None))}


async def status(gate: Gate, address: str, query: bytes = b"") -> int | None:
    """A request from `address` (a trending list: 1 unit, 3 with n=100) through the gate:
    its status once answered."""
    answered: list[int] = []

    async def send(message: dict) -> None:
        if message["type"] == "http.response.start":
            answered.append(message["status"])

    async def receive() -> dict:
        return {"type": "http.request", "body": b"", "more_body": False}

    await gate(request_from(address, query), receive, send)
    return answered[0] if answered else None


async def status_of(gate: Gate, address: str, tasks: list[asyncio.Task],
                    query: bytes = b"") -> int | None:
    """Start a request from `address`; its status if answered at once, None if admitted."""
    task = asyncio.create_task(status(gate, address, query))
    tasks.append(task)
    await asyncio.sleep(0.01)
    return task.result() if task.done() else None


async def test_a_light_caller_gets_its_fair_part_of_a_full_process() -> None:
    app = Held()
    gate = Gate(app, capacity=CAPACITY, share=SHARE, is_open=lambda path: False,
                over_limit_delay=0.0, share_wait=0.0)
    tasks: list[asyncio.Task] = []
    for heavy in ("a", "a", "b", "b"):
        assert await status_of(gate, heavy, tasks) is None  # admitted: the process is full
    assert await status_of(gate, "a", tasks) == 429  # past a's own share
    assert await status_of(gate, "c", tasks) is None  # 4 // 3 callers = 1: c's fair part
    assert await status_of(gate, "c", tasks) == 503  # c already holds its part
    assert await status_of(gate, "d", tasks) is None  # 4 // 4 = 1
    assert await status_of(gate, "e", tasks) == 503  # 4 // 5 = 0: the process is full
    assert gate.in_flight == 6  # bounded: under twice the capacity
    app.release.set()
    await asyncio.gather(*tasks)
    assert gate.in_flight == 0 and gate.in_flight_by == {}


async def test_a_caller_alone_may_use_the_whole_process_until_another_comes() -> None:
    """One app's caller is alone: its share does not hold it back from an idle process. It
    is held to its share again while another caller holds work or has asked within
    `alone_after`, admitted or not: one refused because the process is full counts, or the
    caller filling it would stay alone and keep it full."""
    app = Held()
    gate = Gate(app, capacity=CAPACITY, share=SHARE, is_open=lambda path: False,
                over_limit_delay=0.0, alone_after=0.2, share_wait=0.0)
    tasks: list[asyncio.Task] = []
    for _ in range(SHARE + 1):
        assert await status_of(gate, "a", tasks) is None  # past SHARE: a is alone
    assert await status_of(gate, "b", tasks, b"n=100") == 503  # 3 units: past b's fair part
    for _ in range(2):
        assert await status_of(gate, "a", tasks) == 429  # b asked: a's share applies
    assert await status_of(gate, "b", tasks) is None  # 1 unit: within b's fair part, 4 // 2
    app.release.set()
    await asyncio.gather(*tasks)
    app.release.clear()
    assert await status_of(gate, "b", tasks) is None  # b holds work ...
    await asyncio.sleep(0.25)  # ... and asked longer ago than alone_after
    for _ in range(SHARE):
        assert await status_of(gate, "a", tasks) is None
    assert await status_of(gate, "a", tasks) == 429  # b still holds work
    app.release.set()
    await asyncio.gather(*tasks)
    app.release.clear()
    await asyncio.sleep(0.25)
    for _ in range(CAPACITY):
        assert await status_of(gate, "a", tasks) is None  # alone again
    assert await status_of(gate, "a", tasks) == 429  # alone, its share is the whole process
    assert gate.in_flight_by == {"address a": CAPACITY}
    app.release.set()
    await asyncio.gather(*tasks)


class OneByOne:
    """An app whose requests stay in flight until each is released, in the order admitted."""

    def __init__(self) -> None:
        self.admitted: list[asyncio.Event] = []

    async def __call__(self, scope: dict, receive: object, send: object) -> None:
        released = asyncio.Event()
        self.admitted.append(released)
        await released.wait()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b""})


async def test_a_request_past_its_share_waits_a_little_for_the_callers_own_work() -> None:
    """A burst past the share goes through as the caller's own work finishes, within
    `share_wait`; else 429 then. At most two of a caller's requests wait: a third is
    refused at once."""
    app = OneByOne()
    gate = Gate(app, capacity=8, share=2, is_open=lambda path: False, over_limit_delay=0.0,
                share_wait=0.3)
    first = [asyncio.create_task(status(gate, who)) for who in ("b", "a", "a")]
    await asyncio.sleep(0.01)  # b is there, so a is held to its share (2), which it holds
    burst = [asyncio.create_task(status(gate, "a")) for _ in range(3)]
    await asyncio.sleep(0.01)
    assert burst[2].done() and burst[2].result() == 429  # a third would wait: at once
    assert gate.waiting == {"address a": 2} and gate.in_flight_by["address a"] == 2
    app.admitted[1].set()  # one of a's lists is done: the first waiting takes its place
    await asyncio.sleep(0.01)
    assert len(app.admitted) == 4 and gate.in_flight_by["address a"] == 2
    assert not burst[0].done() and not burst[1].done()
    await asyncio.sleep(0.35)
    assert burst[1].done() and burst[1].result() == 429  # a's work did not finish in time
    for released in app.admitted:
        released.set()
    assert [await task for task in first + burst] == [200, 200, 200, 200, 429, 429]
    assert gate.waiting == {} and gate.released == {} and gate.in_flight_by == {}


async def test_a_waiter_wakes_when_its_callers_work_finishes_beside_another_waiter() -> None:
    """In one step of the loop: a waits for room, one of a's lists finishes, and another of
    a's requests, still past the share, starts waiting. The first is admitted at once, not
    at its deadline (a wake-up lost between one waiter's clear and the other's wait)."""
    app = OneByOne()
    gate = Gate(app, capacity=64, share=4, is_open=lambda path: False, over_limit_delay=0.0,
                share_wait=0.3)
    tasks = [asyncio.create_task(status(gate, who)) for who in ("b", "a", "a", "a", "a")]
    await asyncio.sleep(0.01)  # b is there; a holds its share
    tasks.append(asyncio.create_task(status(gate, "a")))  # 1 unit: waits
    app.admitted[1].set()  # one of a's lists is done
    tasks.append(asyncio.create_task(status(gate, "a", b"n=100")))  # 3 units: still waits
    await asyncio.sleep(0.05)
    assert len(app.admitted) == 6 and gate.waiting == {"address a": 1}
    for released in app.admitted:
        released.set()
    await asyncio.sleep(0.01)
    for released in app.admitted:
        released.set()
    assert await asyncio.gather(*tasks) == [200] * 7
    assert gate.waiting == {} and gate.released == {} and gate.in_flight_by == {}


async def test_a_waiter_still_needs_room_in_the_process_and_a_cancelled_one_leaves_none() -> None:
    """Room in its share is not room in the process: a waiter let through by its caller's
    own work still gets 503 when the process is full and it is past its fair part. A
    waiting request cancelled (its client gone) leaves no count behind."""
    app = OneByOne()
    gate = Gate(app, capacity=5, share=4, is_open=lambda path: False, over_limit_delay=0.0,
                share_wait=0.3)
    tasks = [asyncio.create_task(status(gate, who)) for who in ("a", "a", "a", "b", "c")]
    await asyncio.sleep(0.01)  # full: a holds 3, b and c 1 each
    waiter = asyncio.create_task(status(gate, "a", b"n=100"))  # 3 units: 3 + 3 > 4
    no_room = asyncio.create_task(status(gate, "a"))  # 1 unit: 3 + 1 <= 4, but full: 503
    await asyncio.sleep(0.01)
    assert no_room.done() and no_room.result() == 503
    cancelled = asyncio.create_task(status(gate, "a", b"n=100"))
    await asyncio.sleep(0.01)
    assert gate.waiting == {"address a": 2}
    cancelled.cancel()
    await asyncio.sleep(0.01)
    assert gate.waiting == {"address a": 1}
    app.admitted[0].set()
    app.admitted[1].set()  # a holds 1: 1 + 3 is within its share, not within the process
    await asyncio.sleep(0.01)
    assert waiter.done() and waiter.result() == 503  # 3 + 3 > 5; fair part 5 // 3 = 1
    for released in app.admitted:
        released.set()
    await asyncio.gather(*tasks)
    assert gate.waiting == {} and gate.released == {} and gate.in_flight_by == {}


async def test_a_caller_refused_within_the_delay_does_not_wait_again() -> None:
    """A burst is waited for; a caller refused less than `over_limit_delay` ago keeps its
    share full (a flood) and its next request past the share does not wait: its 429 is held
    back as any repeat refusal."""
    app = OneByOne()
    gate = Gate(app, capacity=8, share=2, is_open=lambda path: False, over_limit_delay=0.5,
                share_wait=0.1)
    tasks = [asyncio.create_task(status(gate, who)) for who in ("b", "a", "a")]
    await asyncio.sleep(0.01)
    first = asyncio.create_task(status(gate, "a"))
    await asyncio.sleep(0.01)
    assert gate.waiting == {"address a": 1}
    await asyncio.sleep(0.15)
    assert first.done() and first.result() == 429  # waited, in vain; refused at once then
    again = asyncio.create_task(status(gate, "a"))
    await asyncio.sleep(0.01)
    assert gate.waiting == {} and gate.delayed == 1 and not again.done()  # held back
    for released in app.admitted:
        released.set()
    assert await again == 429
    await asyncio.gather(*tasks)

def test_a_request_costs_what_it_asks_the_process_to_do() -> None:
    """1 for a light request, 1 more per 50 items and per 64 KiB of body; a personalised list
    (scored from a history) 6 more and 1 more per 10 items; n beyond what the service
    accepts is not counted."""
    def cost(path: str, query: str = "", length: int | str | None = None) -> int:
        headers = [] if length is None else [(b"content-length", str(length).encode("latin-1"))]
        return request_cost({"path": path, "query_string": query.encode(), "headers": headers})

    assert cost("/v1/trending", "n=10") == 1
    assert cost("/v1/items/i1/similar", "n=100") == 3
    assert cost("/v1/users/u1/recommendations", "n=10") == 8
    assert cost("/v1/users/u1/recommendations", "n=500") == 57
    assert cost("/v1/users/u1/recommendations", "n=100000") == 57
    assert cost("/v1/sessions/recommendations", "n=10", length=200_000) == 11
    assert cost("/v1/events", length=64 * 1024 * 100) == 17
    assert cost("/v1/users/u1/recommendations") == 8  # the default length, 10
    for spelled in ("n=500.0", "n=%2B500", "n=5_00", "n=10&n=500"):  # as the route reads n
        assert cost("/v1/users/u1/recommendations", spelled) == 57
    assert cost("/v1/users/u1/recommendations", "n=%C2%B2") == 8  # refused by the route (422)
    many = "&".join(f"n=x{k}" for k in range(17))  # more distinct values than are read
    assert cost("/v1/users/u1/recommendations", many) == 57
    assert cost("/v1/events", length="0" * 5000 + "64") == 1  # digits past int()'s limit
    assert cost("/v1/events", length="9" * 5000) == 17
    assert cost("/v1/events", length="\xb2") == 1  # not a number: BodyGuard answers 400
    chunked = request_cost({"path": "/v1/events", "query_string": b"",
                            "headers": [(b"transfer-encoding", b"chunked")]})
    assert chunked == 17  # no length declared: counted at the most


def test_a_body_asks_for_n_as_the_route_reads_it() -> None:
    """Starlette's json.loads reads UTF-16 and a byte-order mark, which orjson refuses."""
    body = '{"items": ["a"], "n": 500}'
    assert listed_n_in(body.encode("utf-16")) == 500
    assert listed_n_in(body.encode("utf-8-sig")) == 500
    assert listed_n_in(b"[" * 100_000) is None  # nested too deep: the route says why


async def test_a_key_pays_its_rate_for_all_it_asks_and_one_request_may_pass_its_share() -> None:
    """An n=500 personalised list (57 units) goes alone past the caller's share and holds the
    whole capacity (32) while its key's rate is charged 57; the same key's next request is
    refused (429: past its share, the whole process while it is alone), while another key gets
    its fair part (32 // 2)."""
    charged: list[tuple[str, int]] = []
    auth = SimpleNamespace(identify=lambda key: SimpleNamespace(name=f"key {key}"),
                           charge=lambda caller, cost: charged.append((caller.name, cost)))
    app = Held()
    gate = Gate(app, capacity=32, share=16, is_open=lambda path: False, over_limit_delay=0.0,
                share_wait=0.0)
    statuses: list[int] = []

    async def receive() -> dict:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict) -> None:
        if message["type"] == "http.response.start":
            statuses.append(message["status"])

    def asking(key: str, path: str, query: bytes) -> asyncio.Task:
        scope = {"type": "http", "path": path, "query_string": query,
                 "headers": [(b"authorization", f"Bearer {key}".encode())],
                 "client": ("10.0.0.1", 1), "app": SimpleNamespace(state=SimpleNamespace(
                     auth=auth))}
        return asyncio.create_task(gate(scope, receive, send))

    tasks = [asking("k1", "/v1/users/u1/recommendations", b"n=500")]
    await asyncio.sleep(0.01)
    assert charged == [("key k1", 57)] and gate.in_flight_by == {"key k1": 32}
    tasks.append(asking("k1", "/v1/trending", b""))
    await asyncio.sleep(0.01)
    assert statuses == [429] and charged == [("key k1", 57), ("key k1", 1)]
    tasks.append(asking("k2", "/v1/trending", b""))
    await asyncio.sleep(0.01)
    assert charged[-1] == ("key k2", 1) and gate.in_flight == 33
    app.release.set()
    await asyncio.gather(*tasks)
    assert statuses == [429, 200, 200] and gate.in_flight_by == {}
