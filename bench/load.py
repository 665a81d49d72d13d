"""HTTP load generator, run as its own process so it does not share an event loop (or a GIL)
with the service or the orchestrator. Prints one JSON object with the latencies' quantiles.

Open loop (`--rate`): requests start on schedule whether or not earlier ones finished, so a
slow service shows as latency instead of silently lowering the offered load.
Closed loop (`--concurrency`): that many requests always in flight: the saturation rate.

`{user}` and `{item}` in the URL are replaced by u0..u999 and i0..i999 in turn (warm ids of
the benchmark's synthetic stream).

The requests come from `--clients` client addresses in turn (127.0.0.2, 127.0.0.3, ...: all
of 127.0.0.0/8 is loopback), as many people's would: the service bounds each client's share
of its work, so one address would be one client holding the whole process, and its refusals
would be the retry-loop kind (429, answered late), not overload (503, at once).
"""

import argparse
import asyncio
import contextlib
import itertools
import json
import time

import aiohttp


def quantile(sorted_values: list[float], q: float) -> float:
    return sorted_values[min(len(sorted_values) - 1, int(len(sorted_values) * q))]


async def run(url: str, rate: float | None, concurrency: int | None, seconds: float,
              timeout: float, clients: int) -> dict:
    latencies: list[float] = []
    answered: list[float] = []  # 200s
    refused: list[float] = []  # 429/503: the service said no, quickly or not
    errors = 0
    ids = itertools.cycle(range(1000))
    client_timeout = aiohttp.ClientTimeout(total=timeout)
    sessions = [aiohttp.ClientSession(timeout=client_timeout, connector=aiohttp.TCPConnector(
        limit=max(1, 512 // clients), local_addr=(f"127.0.0.{2 + k}", 0)))
        for k in range(clients)]
    by_turn = itertools.cycle(sessions)
    async with contextlib.AsyncExitStack() as stack:
        for session in sessions:
            await stack.enter_async_context(session)

        async def one() -> None:
            nonlocal errors
            k, session = next(ids), next(by_turn)
            started = time.perf_counter()
            try:
                async with session.get(url.format(user=f"u{k}", item=f"i{k}")) as response:
                    await response.read()
                    status = response.status
            except (aiohttp.ClientError, TimeoutError):
                status = None
            errors += status != 200
            took = (time.perf_counter() - started) * 1000
            latencies.append(took)
            if status == 200:
                answered.append(took)
            elif status in (429, 503):
                refused.append(took)

        begin = time.perf_counter()
        if rate is not None:
            tasks = []
            for k in range(int(rate * seconds)):
                delay = begin + k / rate - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                tasks.append(asyncio.create_task(one()))
            await asyncio.gather(*tasks)
        else:
            async def loop() -> None:
                while time.perf_counter() - begin < seconds:
                    await one()

            await asyncio.gather(*(loop() for _ in range(concurrency or 1)))
        elapsed = time.perf_counter() - begin
    latencies.sort()
    answered.sort()
    refused.sort()
    return {"offered": rate, "concurrency": concurrency, "requests": len(latencies),
            # goodput: answers refused (429/503) or too slow are not achieved
            "achieved": (len(latencies) - errors) / elapsed, "errors": errors,
            "mean_ms": sum(latencies) / len(latencies), "p50_ms": quantile(latencies, 0.50),
            "p95_ms": quantile(latencies, 0.95),
            "p99_ms": quantile(latencies, 0.99),
            "answered_p99_ms": quantile(answered, 0.99) if answered else None,
            "refused": len(refused),
            "refused_p99_ms": quantile(refused, 0.99) if refused else None}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("url")
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--rate", type=float, help="offered requests per second (open loop)")
    mode.add_argument("--concurrency", type=int, help="requests in flight (closed loop)")
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--timeout", type=float, default=2.0, help="a slower answer is an error")
    parser.add_argument("--clients", type=int, default=32, choices=range(1, 250),
                        metavar="1..249", help="client addresses the requests come from")
    args = parser.parse_args()
    print(json.dumps(asyncio.run(run(args.url, args.rate, args.concurrency, args.seconds,
                                     args.timeout, args.clients))))


if __name__ == "__main__":
    main()
