"""Benchmarks of the whole system on this machine: ingest, serving latency, freshness, memory.

Run with `make bench` (or `python bench/run.py --events 100000`). Prints a table per part,
writes bench/results/results.json and bench/results/ingest.png. Figures on shared, noisy
machines: compare the ratios measured in one run, not absolute numbers across runs.
"""

import argparse
import asyncio
import json
import os
import platform
import random
import sys
import time
from pathlib import Path

import httpx
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from redis.asyncio import Redis
from rich.console import Console
from rich.table import Table

from stream_app.state_writer import StateWriter, StreamRecord
from streamrec.contract import InteractionEvent, RedisKeys, Settings
from streamrec.embedded import embedded_servers, free_port, start_child, stop_child
from streamrec.plots import plot_bars
from streamrec.topics import ensure_topics

ROOT = Path(__file__).resolve().parent
RESULTS = ROOT / "results"
console = Console()


def synthetic_events(count: int, users: int = 10_000, items: int = 50_000, seed: int = 1
                     ) -> list[InteractionEvent]:
    """Users and items with skewed (Zipf-like) popularity, as in real catalogues."""
    rng = random.Random(seed)
    item_weights = [1 / (rank + 1) ** 0.8 for rank in range(items)]
    picked = rng.choices(range(items), item_weights, k=count)
    start = int(time.time() * 1000) - count
    kinds = ["view", "view", "view", "click", "add_to_cart", "purchase"]
    return [InteractionEvent(event_id=str(k), user_id=f"u{rng.randrange(users)}",
                             item_id=f"i{picked[k]}", event_type=rng.choice(kinds),
                             timestamp=start + k) for k in range(count)]


def environment(settings: Settings) -> dict[str, str]:
    values = settings.model_dump(mode="json")
    env = dict(os.environ)
    env.update({f"STREAMREC_{k.upper()}": v if isinstance(v, str) else json.dumps(v)
                for k, v in values.items()})
    return env


async def produce(settings: Settings, events: list[InteractionEvent]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap_servers,
                                linger_ms=20, max_batch_size=512 * 1024)
    await producer.start()
    try:
        for event in events:
            await producer.send(settings.events_topic, key=event.user_id.encode(),
                                value=event.model_dump_json().encode())
        await producer.flush()
    finally:
        await producer.stop()


async def plain_consumer_rate(settings: Settings, total: int) -> float:
    consumer = AIOKafkaConsumer(settings.events_topic, auto_offset_reset="earliest",
                                bootstrap_servers=settings.kafka_bootstrap_servers,
                                group_id=f"plain-{time.time()}", max_poll_records=5000)
    await consumer.start()
    seen, started = 0, None
    try:
        while seen < total:
            batch = await consumer.getmany(timeout_ms=1000, max_records=5000)
            for records in batch.values():
                for record in records:
                    json.loads(record.value)
                    seen += 1
            if seen and started is None:
                started = time.perf_counter()
    finally:
        await consumer.stop()
    return seen / (time.perf_counter() - (started or time.perf_counter()))


async def redis_loop_rate(settings: Settings, events: list[InteractionEvent]) -> dict:
    """The worker's Redis writes without Kafka or Faust: StateWriter in batches of 200."""
    redis = Redis.from_url(settings.redis_url)
    writer = StateWriter(redis, settings)
    before = await redis.info("all")
    started = time.perf_counter()
    for start in range(0, len(events), settings.batch_max_events):
        await writer.apply([StreamRecord("bench:0", start + k, e) for k, e in
                            enumerate(events[start:start + settings.batch_max_events])])
    seconds = time.perf_counter() - started
    after = await redis.info("all")
    await redis.aclose()
    return {
        "events_per_second": len(events) / seconds,
        "redis_commands_per_event": (after["total_commands_processed"]
                                     - before["total_commands_processed"]) / len(events),
        "redis_cpu_seconds": (after["used_cpu_user"] + after["used_cpu_sys"])
                             - (before["used_cpu_user"] + before["used_cpu_sys"]),
        "seconds": seconds,
    }


def process_rate(settings: Settings, total: int, command: list[str], counter: str,
                 logs: Path) -> float:
    """Events/s of a worker process, from its first to its last applied event (in Redis)."""
    import redis

    client = redis.Redis.from_url(settings.redis_url)
    key = RedisKeys(settings.key_prefix).counters
    process = start_child(command, logs, environment(settings))
    try:
        first = None
        while True:
            done = int(client.hget(key, counter) or 0)
            if done and first is None:
                first = (time.perf_counter(), done)
            if done >= total:
                break
            if process.poll() is not None:
                raise RuntimeError(f"{command} exited; see {logs}")
            time.sleep(0.05)
        return (done - first[1]) / (time.perf_counter() - first[0])
    finally:
        stop_child(process)
        client.close()


def bench_ingest(servers: object, count: int, workdir: Path) -> dict:
    base = Settings(kafka_bootstrap_servers=servers.broker.bootstrap_servers,
                    redis_url=servers.redis.url, topic_partitions=8)
    events = synthetic_events(count)
    asyncio.run(ensure_topics(base))
    console.print(f"producing {count:,} events ...")
    asyncio.run(produce(base, events))
    worker = base.model_copy(update={"key_prefix": "bench-worker",
                                     "consumer_group": "bench-worker"})
    empty = base.model_copy(update={"key_prefix": "bench-empty",
                                    "consumer_group": "bench-empty"})
    loop = base.model_copy(update={"key_prefix": "bench-loop"})
    console.print("plain aiokafka consumer ...")
    plain = asyncio.run(plain_consumer_rate(base, count))
    console.print("Faust with an empty agent ...")
    empty_rate = process_rate(empty, count, [sys.executable, str(ROOT / "empty_faust.py")],
                              "seen", workdir / "empty.log")
    console.print("the worker ...")
    worker_rate = process_rate(worker, count, [sys.executable, "-m", "streamrec", "worker"],
                               "events_applied", workdir / "worker.log")
    console.print("the Redis writes alone ...")
    redis_only = asyncio.run(redis_loop_rate(loop, events))
    return {
        "events": count,
        "plain_aiokafka_consumer": plain,
        "faust_empty_agent": empty_rate,
        "worker": worker_rate,
        "redis_writes_alone": redis_only["events_per_second"],
        "worker_over_empty_faust": worker_rate / empty_rate,
        "redis_commands_per_event": redis_only["redis_commands_per_event"],
        "redis_cpu_seconds_per_1000_events": redis_only["redis_cpu_seconds"] / count * 1000,
    }


async def latency_at(url: str, rate: float, seconds: float) -> dict:
    """Open-loop load: requests start on schedule whether or not earlier ones finished."""
    latencies: list[float] = []
    errors = 0
    async with httpx.AsyncClient(limits=httpx.Limits(max_connections=200)) as client:
        async def one() -> None:
            nonlocal errors
            started = time.perf_counter()
            try:
                ok = (await client.get(url)).status_code == 200
            except httpx.HTTPError:
                ok = False
            errors += not ok
            latencies.append((time.perf_counter() - started) * 1000)

        tasks = []
        begin = time.perf_counter()
        for k in range(int(rate * seconds)):
            delay = begin + k / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one()))
        await asyncio.gather(*tasks)
        achieved = len(tasks) / (time.perf_counter() - begin)
    latencies.sort()
    return {"offered": rate, "achieved": achieved, "errors": errors,
            "p50_ms": latencies[len(latencies) // 2],
            "p95_ms": latencies[int(len(latencies) * 0.95)],
            "p99_ms": latencies[int(len(latencies) * 0.99)]}


def bench_serving(servers: object, workdir: Path, rates: list[float], seconds: float) -> dict:
    settings = Settings(kafka_bootstrap_servers=servers.broker.bootstrap_servers,
                        redis_url=servers.redis.url, key_prefix="bench-worker",
                        http_port=free_port())
    service = start_child([sys.executable, "-m", "streamrec", "serve", "--log-level",
                           "warning"], workdir / "service.log", environment(settings))
    base = f"http://127.0.0.1:{settings.http_port}"
    try:
        for _ in range(200):
            try:
                if httpx.get(f"{base}/healthz").status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.1)
        results = {}
        for label, path in (("personalised n=10", "/v1/users/u7/recommendations?n=10"),
                            ("personalised n=100", "/v1/users/u7/recommendations?n=100"),
                            ("similar n=10", "/v1/items/i3/similar?n=10")):
            results[label] = [asyncio.run(latency_at(base + path, rate, seconds))
                              for rate in rates]
        return results
    finally:
        stop_child(service)


def bench_freshness(servers: object, workdir: Path, samples: int) -> dict:
    """Single events produced to Kafka while 1k events/s of background traffic flow; the
    time until the user's served list carries the event in its freshness watermark."""
    settings = Settings(kafka_bootstrap_servers=servers.broker.bootstrap_servers,
                        redis_url=servers.redis.url, key_prefix="bench-fresh",
                        consumer_group="bench-fresh", events_topic="bench-fresh-events",
                        http_port=free_port())
    asyncio.run(ensure_topics(settings))
    env = environment(settings)
    worker = start_child([sys.executable, "-m", "streamrec", "worker"],
                         workdir / "fresh-worker.log", env)
    service = start_child([sys.executable, "-m", "streamrec", "serve", "--log-level",
                           "warning"], workdir / "fresh-service.log", env)
    traffic = start_child([sys.executable, "-m", "streamrec", "traffic", "--rate", "1000"],
                          workdir / "fresh-traffic.log", env)
    base = f"http://127.0.0.1:{settings.http_port}"

    async def measure() -> list[float]:
        producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap_servers)
        await producer.start()
        delays = []
        async with httpx.AsyncClient() as client:
            for k in range(samples + 20):
                user = f"fresh-{k}"
                stamp = int(time.time() * 1000)
                event = InteractionEvent(event_id=f"f{k}", user_id=user, item_id="item-c0-1",
                                         event_type="view", timestamp=stamp)
                started = time.perf_counter()
                await producer.send_and_wait(settings.events_topic, key=user.encode(),
                                             value=event.model_dump_json().encode())
                while True:
                    body = (await client.get(f"{base}/v1/users/{user}/recommendations")).json()
                    if (body["freshness"]["event_time_ms"] or 0) >= stamp:
                        break
                    if time.perf_counter() - started > 30:
                        raise TimeoutError("event never became visible")
                if k >= 20:  # the first ones wait for the worker to join its group
                    delays.append((time.perf_counter() - started) * 1000)
                await asyncio.sleep(0.02)
        await producer.stop()
        return delays

    try:
        time.sleep(8)
        delays = sorted(asyncio.run(measure()))
    finally:
        for process in (traffic, service, worker):
            stop_child(process)
    return {"samples": len(delays), "p50_ms": delays[len(delays) // 2],
            "p95_ms": delays[int(len(delays) * 0.95)], "p99_ms": delays[int(len(delays) * 0.99)]}


async def bench_memory(redis_url: str, counts: list[int]) -> list[dict]:
    results = []
    for count in counts:
        settings = Settings(redis_url=redis_url, key_prefix=f"bench-memory-{count}")
        redis = Redis.from_url(redis_url)
        await redis.flushdb()
        writer = StateWriter(redis, settings)
        events = synthetic_events(count, seed=count)
        for start in range(0, count, 500):
            await writer.apply([StreamRecord("m:0", start + k, e)
                                for k, e in enumerate(events[start:start + 500])])
        used = (await redis.info("memory"))["used_memory"]
        items = await redis.hlen(RedisKeys(settings.key_prefix).item_user_counts)
        results.append({"events": count, "used_memory_bytes": used,
                        "bytes_per_event": used / count, "items": items,
                        "bytes_per_item": used / items})
        await redis.flushdb()
        await redis.aclose()
    return results


def machine() -> dict:
    model = next((line.split(":", 1)[1].strip() for line in
                  Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), platform.processor())
    return {"cores": os.cpu_count(), "cpu": model, "python": platform.python_version()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--seconds", type=float, default=3.0, help="per serving load level")
    parser.add_argument("--rates", default="50,100,200,400")
    parser.add_argument("--memory", default="100000,1000000")
    args = parser.parse_args()
    RESULTS.mkdir(exist_ok=True)
    results: dict = {"machine": machine(), "date": time.strftime("%Y-%m-%d %H:%M")}
    with embedded_servers() as servers:
        workdir = servers.workdir
        results["ingest"] = bench_ingest(servers, args.events, workdir)
        results["serving"] = bench_serving(servers, workdir,
                                           [float(r) for r in args.rates.split(",")],
                                           args.seconds)
        results["freshness"] = bench_freshness(servers, workdir, samples=200)
        results["memory"] = asyncio.run(bench_memory(
            servers.redis.url, [int(c) for c in args.memory.split(",")]))
    (RESULTS / "results.json").write_text(json.dumps(results, indent=2))
    report(results)


def report(results: dict) -> None:
    ingest = results["ingest"]
    table = Table(title=f"ingest: {ingest['events']:,} events, 8 partitions, one worker")
    table.add_column("path")
    table.add_column("events/s", justify="right")
    for label in ("plain_aiokafka_consumer", "faust_empty_agent", "worker",
                  "redis_writes_alone"):
        table.add_row(label.replace("_", " "), f"{ingest[label]:,.0f}")
    console.print(table)
    console.print(f"worker / empty Faust = {ingest['worker_over_empty_faust']:.2f}; "
                  f"{ingest['redis_commands_per_event']:.1f} Redis commands per event "
                  f"(inside scripts: each batch is one EVALSHA)")
    plot_bars(RESULTS / "ingest.png", "ingest rate (events/s)",
              {k.replace("_", " "): ingest[k] for k in ("plain_aiokafka_consumer",
                                                        "faust_empty_agent", "worker",
                                                        "redis_writes_alone")})
    table = Table(title="serving latency (open loop, one service process)")
    for column in ("endpoint", "offered req/s", "achieved", "p50 ms", "p95 ms", "p99 ms",
                   "errors"):
        table.add_column(column, justify="right")
    for label, levels in results["serving"].items():
        for level in levels:
            table.add_row(label, f"{level['offered']:.0f}", f"{level['achieved']:.0f}",
                          f"{level['p50_ms']:.1f}", f"{level['p95_ms']:.1f}",
                          f"{level['p99_ms']:.1f}", str(level["errors"]))
    console.print(table)
    fresh = results["freshness"]
    console.print(f"freshness (event produced -> visible in the user's list, 1k events/s "
                  f"background): p50 {fresh['p50_ms']:.0f} ms, p95 {fresh['p95_ms']:.0f} ms, "
                  f"p99 {fresh['p99_ms']:.0f} ms")
    for row in results["memory"]:
        console.print(f"memory after {row['events']:,} events: "
                      f"{row['used_memory_bytes'] / 2**20:.0f} MiB, "
                      f"{row['bytes_per_event']:.0f} B/event, {row['bytes_per_item']:.0f} B/item")


if __name__ == "__main__":
    main()
