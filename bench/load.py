"""HTTP load generator, run as its own process so it does not share an event loop (or a GIL)
with the service or the orchestrator. Prints one JSON object with the latencies' quantiles.

Open loop (`--rate`): requests start on schedule whether or not earlier ones finished, so a
slow service shows as latency instead of silently lowering the offered load.
Closed loop (`--concurrency`): that many requests always in flight: the saturation rate.

`{user}` and `{item}` in the URL are replaced by u0..u999 and i0..i999 in turn (warm ids of
the benchmark's synthetic stream).
"""

import argparse
import asyncio
import itertools
import json
import time

import aiohttp


def quantile(sorted_values: list[float], q: float) -> float:
    return sorted_values[min(len(sorted_values) - 1, int(len(sorted_values) * q))]


async def run(url: str, rate: float | None, concurrency: int | None, seconds: float,
              timeout: float) -> dict:
    latencies: list[float] = []
    answered: list[float] = []  # 200s
    refused: list[float] = []  # 429/503: the service said no, quickly or not
    errors = 0
    ids = itertools.cycle(range(1000))
    connector = aiohttp.TCPConnector(limit=512)
    client_timeout = aiohttp.ClientTimeout(total=timeout)
    async with aiohttp.ClientSession(connector=connector, timeout=client_timeout) as session:
        async def one() -> None:
            nonlocal errors
            k = next(ids)
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
    args = parser.parse_args()
    print(json.dumps(asyncio.run(run(args.url, args.rate, args.concurrency, args.seconds,
                                     args.timeout))))


if __name__ == "__main__":
    main()
