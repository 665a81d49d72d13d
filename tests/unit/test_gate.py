"""The gate's admission rules, driven through its ASGI interface with requests held in
flight: each caller's share, the process's capacity, and the fair part of it that lets a
light caller in while heavy ones fill the process."""

import asyncio
from types import SimpleNamespace

from serving.guards import Gate, request_cost

CAPACITY, SHARE = 4, 2


class Held:
    """An app whose requests stay in flight until released."""

    def __init__(self) -> None:
        self.release = asyncio.Event()

    async def __call__(self, scope: dict, receive: object, send: object) -> None:
        await self.release.wait()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b""})


def request_from(address: str) -> dict:
    return {"type": "http", "path": "/v1/trending", "query_string": b"", "headers": [],
            "client": (address, 1), "app": SimpleNamespace(state=SimpleNamespace(auth=None))}


async def status_of(gate: Gate, address: str, tasks: list[asyncio.Task]) -> int | None:
    """Start a request from `address`; its status if answered at once, None if admitted."""
    answered: list[int] = []

    async def send(message: dict) -> None:
        if message["type"] == "http.response.start":
            answered.append(message["status"])

    async def receive() -> dict:
        return {"type": "http.request", "body": b"", "more_body": False}

    tasks.append(asyncio.create_task(gate(request_from(address), receive, send)))
    await asyncio.sleep(0.01)
    return answered[0] if answered else None


async def test_a_light_caller_gets_its_fair_part_of_a_full_process() -> None:
    app = Held()
    gate = Gate(app, capacity=CAPACITY, share=SHARE, is_open=lambda path: False,
                over_limit_delay=0.0)
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


def test_a_request_costs_what_it_asks_the_process_to_do() -> None:
    """1 for a light request, 1 more per 50 items and per 64 KiB of body; a personalised list
    (scored from a history) 6 more and 1 more per 10 items; n beyond what the service
    accepts is not counted."""
    def cost(path: str, query: str = "", length: int | None = None) -> int:
        headers = [] if length is None else [(b"content-length", str(length).encode())]
        return request_cost({"path": path, "query_string": query.encode(), "headers": headers})

    assert cost("/v1/trending", "n=10") == 1
    assert cost("/v1/items/i1/similar", "n=100") == 3
    assert cost("/v1/users/u1/recommendations", "n=10") == 8
    assert cost("/v1/users/u1/recommendations", "n=500") == 57
    assert cost("/v1/users/u1/recommendations", "n=100000") == 57
    assert cost("/v1/sessions/recommendations", "n=10", length=200_000) == 11
    assert cost("/v1/events", length=64 * 1024 * 100) == 17


async def test_a_key_pays_its_rate_for_all_it_asks_though_one_request_fits_its_share() -> None:
    """A request past the share is admitted alone, holding the share; the key's rate is
    charged its whole cost (an n=500 personalised list costs 57, the share is 16)."""
    charged: list[int] = []
    auth = SimpleNamespace(identify=lambda key, cost: charged.append(cost) or
                           SimpleNamespace(name=f"key {key}"))
    app = Held()
    gate = Gate(app, capacity=32, share=16, is_open=lambda path: False, over_limit_delay=0.0)
    scope = {"type": "http", "path": "/v1/users/u1/recommendations", "query_string": b"n=500",
             "headers": [(b"authorization", b"Bearer k1")], "client": ("10.0.0.1", 1),
             "app": SimpleNamespace(state=SimpleNamespace(auth=auth))}

    async def receive() -> dict:
        return {"type": "http.request", "body": b"", "more_body": False}

    statuses: list[int] = []

    async def send(message: dict) -> None:
        if message["type"] == "http.response.start":
            statuses.append(message["status"])

    task = asyncio.create_task(gate(scope, receive, send))
    await asyncio.sleep(0.01)
    assert charged == [57] and gate.in_flight_by == {"key k1": 16}
    app.release.set()
    await task
    assert statuses == [200]
