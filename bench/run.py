"""Benchmarks of the whole system on this machine: ingest, serving latency, freshness, memory.

Run with `make bench` (or `python bench/run.py --events 100000`). Prints a table per part,
writes bench/results/results.json and bench/results/ingest.png. Figures on shared, noisy
machines: compare the ratios measured in one run, not absolute numbers across runs.
"""

import argparse
import asyncio
import contextlib
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import httpx
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from redis.asyncio import Redis
from report import markdown, plot, show, summarise, update_readme

from serving.guards import request_cost
from stream_app.state_writer import StateWriter, StreamRecord
from streamrec import output
from streamrec.contract import (
    InteractionEvent,
    RedisKeys,
    Settings,
    ensure_topics,
    produce_records,
)
from streamrec.servers import (
    child_environment,
    embedded_servers,
    free_port,
    start_child,
    stop_child,
    wait_until_healthy,
)

ROOT = Path(__file__).resolve().parent
RESULTS = ROOT / "results"
console = output.console()


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


async def produce(settings: Settings, events: list[InteractionEvent]) -> None:
    await produce_records(settings, settings.events_topic, (
        (event.user_id.encode(), event.model_dump_json().encode()) for event in events),
        linger_ms=20)


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
                    if record.value:  # not a partition's epoch record (no value)
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
    process = start_child(command, logs, child_environment(settings))
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


def bench_ingest(servers: object, events: list[InteractionEvent], workdir: Path, run: str
                 ) -> dict:
    """Each run has its own topic, consumer groups and key prefixes: runs do not interact."""
    count = len(events)
    base = Settings(kafka_bootstrap_servers=servers.broker.bootstrap_servers,
                    redis_url=servers.redis.url, topic_partitions=8,
                    events_topic=f"{run}-events", items_topic=f"{run}-items",
                    dead_letter_topic=f"{run}-dead-letter")
    asyncio.run(ensure_topics(base))
    console.print(f"  producing {count:,} events ...")
    asyncio.run(produce(base, events))

    def named(role: str) -> Settings:
        return base.model_copy(update={"key_prefix": f"{run}-{role}",
                                       "consumer_group": f"{run}-{role}"})

    console.print("  plain aiokafka consumer ...")
    plain = asyncio.run(plain_consumer_rate(base, count))
    console.print("  Faust with an empty agent ...")
    empty_rate = process_rate(named("empty"), count,
                              [sys.executable, str(ROOT / "empty_faust.py")], "seen",
                              workdir / f"{run}-empty.log")
    console.print("  the worker ...")
    worker_rate = process_rate(named("worker"), count,
                               [sys.executable, "-m", "streamrec", "worker"], "events_applied",
                               workdir / f"{run}-worker.log")
    console.print("  the Redis writes alone ...")
    redis_only = asyncio.run(redis_loop_rate(named("loop"), events))
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


def load(url: str, *mode: str, seconds: float) -> dict:
    """One load level from bench/load.py in its own process."""
    done = subprocess.run([sys.executable, str(ROOT / "load.py"), url, *mode, "--seconds",
                           str(seconds)], capture_output=True, text=True, check=True)
    return json.loads(done.stdout)


def drained(base: str, limit_seconds: float = 10.0) -> None:
    """Wait (at most `limit_seconds`) until the service answers a trivial request quickly
    again: an overloaded level leaves a backlog that is not the next level's."""
    deadline = time.monotonic() + limit_seconds
    with httpx.Client(timeout=limit_seconds) as client:
        while time.monotonic() < deadline:
            started = time.perf_counter()
            client.get(f"{base}/healthz")
            if time.perf_counter() - started < 0.05:
                return
            time.sleep(0.2)


#: What the serving bench asks for; the floor is one stored ranking read, nothing scored.
ENDPOINTS = {
    "trending n=10 (the floor)": "/v1/trending?n=10",
    "personalised n=10": "/v1/users/{user}/recommendations?n=10",
    "personalised n=100": "/v1/users/{user}/recommendations?n=100",
    "similar n=10": "/v1/items/{item}/similar?n=10",
}
OVERLOAD_LABEL = "personalised n=10"
#: Offered loads past saturation, as multiples of it.
OVERLOADS = (2.0, 3.0)


def dense_events() -> list[InteractionEvent]:
    """A small shop's dense head: 40,000 Zipf events over 2,000 users and 4,000 items, so the
    popular items' co-occurrence rows are full (at their cap of 500), as in any real head."""
    return synthetic_events(40_000, users=2_000, items=4_000, seed=40)


async def seed_state(settings: Settings, events: list[InteractionEvent]) -> None:
    """Apply `events` with the worker's writer, straight to Redis (no Kafka)."""
    redis = Redis.from_url(settings.redis_url)
    writer = StateWriter(redis, settings)
    for start in range(0, len(events), 500):
        await writer.apply([StreamRecord("seed:0", start + k, e)
                            for k, e in enumerate(events[start:start + 500])])
    await redis.aclose()


@contextlib.contextmanager
def running_service(servers: object, workdir: Path, prefix: str, **overrides: object
                    ) -> Iterator[str]:
    """A service process over the state under `prefix`; yields its base URL."""
    settings = Settings(kafka_bootstrap_servers=servers.broker.bootstrap_servers,
                        redis_url=servers.redis.url, key_prefix=prefix, http_port=free_port(),
                        auth="disabled",  # the cost of serving, not of key checks
                        **overrides)
    name = "-".join([prefix, "service", *(f"{k}-{v}" if isinstance(v, str) else k
                                          for k, v in overrides.items())])
    service = start_child([sys.executable, "-m", "streamrec", "serve", "--log-level", "warning"],
                          workdir / f"{name}.log", child_environment(settings))
    base = f"http://127.0.0.1:{settings.http_port}"
    try:
        wait_until_healthy(base, service)
        yield base
    finally:
        stop_child(service)


def admitted_in_flight(path: str, most: int) -> int:
    """How many requests for `path` one service process admits at once (by its default
    capacity; the load comes from many client addresses, each within its share), at most
    `most`: the closed loop that saturates it without being refused (refused at once, a
    closed loop's clients would retry in a storm)."""
    capacity = Settings().max_inflight_cost
    url, _, query = path.partition("?")
    cost = min(request_cost({"path": url, "query_string": query.encode(), "headers": []}),
               capacity)
    return max(1, min(most, capacity // cost))


def bench_serving(servers: object, workdir: Path, prefix: str, rates: list[float],
                  concurrency: int, seconds: float) -> dict:
    """Each endpoint at `rates` and at saturation (`concurrency` in flight, or fewer if the
    process admits fewer); personalised n=10 also offered 2x and 3x its saturation (goodput,
    and how fast the excess is refused)."""
    with running_service(servers, workdir, prefix) as base:
        results: dict = {"endpoints": {}}
        for label, path in ENDPOINTS.items():
            levels = []
            saturating = admitted_in_flight(path, concurrency)
            for mode in ([str(r) for r in rates] + [f"c{saturating}"]):
                args = (["--concurrency", mode[1:]] if mode.startswith("c")
                        else ["--rate", mode])
                levels.append(load(base + path, *args, seconds=seconds))
                drained(base)
            results["endpoints"][label] = levels
            console.print(f"  {label}: saturation {levels[-1]['achieved']:.0f} req/s")
        saturation = results["endpoints"][OVERLOAD_LABEL][-1]["achieved"]
        results["overload"] = []
        for times in OVERLOADS:
            level = load(base + ENDPOINTS[OVERLOAD_LABEL], "--rate", f"{saturation * times:.0f}",
                         seconds=seconds)
            level["times_saturation"] = times
            level["goodput_over_saturation"] = level["achieved"] / saturation
            results["overload"].append(level)
            drained(base)
            console.print(f"  offered {times:g}x saturation: goodput "
                          f"{level['goodput_over_saturation']:.2f} of saturation, refused "
                          f"{level['refused']} (p99 {level['refused_p99_ms'] or 0:.0f} ms)")
        floor = results["endpoints"]["trending n=10 (the floor)"][-1]["achieved"]
        results["personalised_over_floor"] = saturation / floor
        console.print(f"  personalised n=10 / floor = {results['personalised_over_floor']:.2f}")
        return results


def bench_without_neighbours(servers: object, workdir: Path, concurrency: int, seconds: float
                             ) -> dict:
    """Dense personalised n=10 at saturation with every judged weighting without the
    neighbours source, so that it is never read: what that source costs, in the same run."""
    pairs = [weighting for weighting in Settings().blend_weightings if not weighting[2]]
    path = ENDPOINTS[OVERLOAD_LABEL]
    with running_service(servers, workdir, "dense", blend_weightings=pairs) as base:
        return load(base + path, "--concurrency", str(admitted_in_flight(path, concurrency)),
                    seconds=seconds)


#: The load the metrics' cost is measured at: dense similar n=10 (the most Python and the
#: least Redis per request of the endpoints, so the instrumentation's share is largest).
METRICS_COST_ENDPOINT, METRICS_COST_RATE = "similar n=10", 200
#: Turns of each (with metrics, without), in the order ABBA..., so drift hits both alike.
METRICS_COST_TURNS = 4


def bench_metrics_cost(servers: object, workdir: Path, seconds: float) -> dict:
    """The same load on two service processes over the same dense state, one with the
    metrics and one without (STREAMREC_METRICS=disabled), in alternating turns: the median
    p99 and mean latency of each and their ratios; and the instrumentation's own time per
    request, timed alone."""
    path = ENDPOINTS[METRICS_COST_ENDPOINT]
    levels: dict[str, list[dict]] = {"enabled": [], "disabled": []}
    with (running_service(servers, workdir, "dense", metrics="enabled") as with_metrics,
          running_service(servers, workdir, "dense", metrics="disabled") as without):
        bases = {"enabled": with_metrics, "disabled": without}
        for turn in range(METRICS_COST_TURNS):
            for metrics in (("enabled", "disabled") if turn % 2 == 0
                            else ("disabled", "enabled")):
                levels[metrics].append(load(bases[metrics] + path, "--rate",
                                            str(METRICS_COST_RATE), seconds=seconds))
                drained(bases[metrics])

    def median(metrics: str, figure: str) -> float:
        return statistics.median(level[figure] for level in levels[metrics])

    figures = {f"{figure}_{metrics}": median(metrics, figure) for figure in ("p99_ms", "mean_ms")
               for metrics in ("enabled", "disabled")}
    return {"endpoint": METRICS_COST_ENDPOINT, "rate": METRICS_COST_RATE, **figures,
            "p99_with_over_without": figures["p99_ms_enabled"] / figures["p99_ms_disabled"],
            "mean_with_over_without": figures["mean_ms_enabled"] / figures["mean_ms_disabled"],
            "instrumentation_us_per_request": instrumentation_seconds() * 1e6}


def instrumentation_seconds(calls: int = 100_000) -> float:
    """What the service's metrics add to one request that serves a list: the request's
    duration observed and its list counted, as the middleware does."""
    from serving.telemetry import RequestTelemetry, record_list

    telemetry = RequestTelemetry(app=None)
    scope = {"route": SimpleNamespace(path="/v1/users/{user_id}/recommendations"),
             "method": "GET"}
    started = time.perf_counter()
    for _ in range(calls):
        record_list("personalised", "bench", 10)
        telemetry.count(scope, 200, 0.005)
    return (time.perf_counter() - started) / calls


class AiokafkaSender:
    """Our own producer: one event per request, acknowledged."""

    def __init__(self, bootstrap: str) -> None:
        self.bootstrap = bootstrap

    async def start(self) -> None:
        self.producer = AIOKafkaProducer(bootstrap_servers=self.bootstrap)  # in the loop
        await self.producer.start()

    async def send(self, topic: str, key: bytes, value: bytes) -> None:
        await self.producer.send_and_wait(topic, key=key, value=value)

    async def stop(self) -> None:
        await self.producer.stop()


class LibrdkafkaSender:
    """What most shops run: librdkafka (confluent-kafka) batching with linger.ms=50, the
    Java partitioner; the event counts as sent once the broker acknowledged it."""

    def __init__(self, bootstrap: str) -> None:
        from confluent_kafka import Producer

        self.producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 50,
                                  "partitioner": "murmur2_random"})

    async def start(self) -> None:
        pass

    async def send(self, topic: str, key: bytes, value: bytes) -> None:
        delivered: list[object] = []
        self.producer.produce(topic, key=key, value=value,
                              on_delivery=lambda error, _: delivered.append(error))
        while not delivered:
            self.producer.poll(0)
            await asyncio.sleep(0.002)
        if delivered[0] is not None:
            raise RuntimeError(f"not delivered: {delivered[0]}")

    async def stop(self) -> None:
        self.producer.flush(5)


PRODUCERS = {"aiokafka": AiokafkaSender, "librdkafka linger 50 ms": LibrdkafkaSender}


def bench_freshness(servers: object, workdir: Path, run: str, samples: int) -> dict:
    """Single events produced to Kafka while 1k events/s of background traffic flow; the
    time until the user's served list carries the event in its freshness watermark, once per
    producer in PRODUCERS."""
    settings = Settings(kafka_bootstrap_servers=servers.broker.bootstrap_servers,
                        redis_url=servers.redis.url, key_prefix=f"{run}-fresh",
                        consumer_group=f"{run}-fresh", events_topic=f"{run}-fresh-events",
                        items_topic=f"{run}-fresh-items", http_port=free_port(),
                        auth="disabled")
    asyncio.run(ensure_topics(settings))
    env = child_environment(settings)
    worker = start_child([sys.executable, "-m", "streamrec", "worker"],
                         workdir / f"{run}-fresh-worker.log", env)
    service = start_child([sys.executable, "-m", "streamrec", "serve", "--log-level",
                           "warning"], workdir / f"{run}-fresh-service.log", env)
    traffic = start_child([sys.executable, "-m", "streamrec", "traffic", "--rate", "1000"],
                          workdir / f"{run}-fresh-traffic.log", env)
    base = f"http://127.0.0.1:{settings.http_port}"

    async def measure(name: str, sender: AiokafkaSender | LibrdkafkaSender) -> list[float]:
        await sender.start()
        delays = []
        async with httpx.AsyncClient() as client:
            for k in range(samples + 20):
                user = f"fresh-{name}-{k}"
                stamp = int(time.time() * 1000)
                event = InteractionEvent(event_id=f"f{k}", user_id=user, item_id="item-c0-1",
                                         event_type="view", timestamp=stamp)
                started = time.perf_counter()
                await sender.send(settings.events_topic, user.encode(),
                                  event.model_dump_json().encode())
                while True:
                    body = (await client.get(f"{base}/v1/users/{user}/recommendations")).json()
                    if (body["freshness"]["event_time_ms"] or 0) >= stamp:
                        break
                    if time.perf_counter() - started > 30:
                        raise TimeoutError("event never became visible")
                if k >= 20:  # the first ones wait for the worker to join its group
                    delays.append((time.perf_counter() - started) * 1000)
                await asyncio.sleep(0.02)
        await sender.stop()
        return sorted(delays)

    def figures(delays: list[float]) -> dict:
        return {"samples": len(delays), "p50_ms": delays[len(delays) // 2],
                "p95_ms": delays[int(len(delays) * 0.95)],
                "p99_ms": delays[int(len(delays) * 0.99)]}

    try:
        time.sleep(8)
        return {name: figures(asyncio.run(measure(name, make(settings.kafka_bootstrap_servers))))
                for name, make in PRODUCERS.items()}
    finally:
        for process in (traffic, service, worker):
            stop_child(process)


async def memory_of(redis: Redis, pattern: str) -> int:
    """Bytes Redis holds under the keys matching `pattern` (MEMORY USAGE, all samples)."""
    total = 0
    async for key in redis.scan_iter(match=pattern, count=1000):
        total += await redis.memory_usage(key, samples=0) or 0
    return total


async def bench_memory(redis_url: str, counts: list[int]) -> list[dict]:
    results = []
    for count in counts:
        settings = Settings(redis_url=redis_url, key_prefix=f"bench-memory-{count}")
        redis = Redis.from_url(redis_url)
        await redis.flushdb()
        await seed_state(settings, synthetic_events(count, seed=count))
        used = (await redis.info("memory"))["used_memory"]
        keys = RedisKeys(settings.key_prefix)
        items = await redis.hlen(keys.item_user_counts)
        erasure_log = await memory_of(redis, keys.user_contributions("*"))
        results.append({"events": count, "used_memory_bytes": used,
                        "bytes_per_event": used / count, "items": items,
                        "bytes_per_item": used / items,
                        "erasure_log_bytes_per_event": erasure_log / count})
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
    parser.add_argument("--repeats", type=int, default=3, help="runs of ingest, serving and "
                        "freshness; figures are their median and range")
    parser.add_argument("--events", type=int, default=50_000)
    parser.add_argument("--seconds", type=float, default=3.0, help="per serving load level")
    parser.add_argument("--rates", default="100,200")
    parser.add_argument("--concurrency", type=int, default=8, help="for the saturation level, "
                        "at most (fewer where the process admits fewer, e.g. 4 personalised "
                        "lists of 10)")
    parser.add_argument("--samples", type=int, default=200, help="freshness events per run")
    parser.add_argument("--memory", default="100000,1000000")
    parser.add_argument("--no-readme", action="store_true", help="do not rewrite README.md")
    args = parser.parse_args()
    RESULTS.mkdir(exist_ok=True)
    started = time.monotonic()
    results: dict = {"machine": machine(), "date": time.strftime("%Y-%m-%d %H:%M"),
                     "repeats": args.repeats, "runs": []}
    events = synthetic_events(args.events)
    with embedded_servers() as servers:
        console.print("seeding the dense state ...")
        asyncio.run(seed_state(Settings(redis_url=servers.redis.url, key_prefix="dense"),
                               dense_events()))
        for k in range(args.repeats):
            run = f"bench{k}"
            console.rule(f"run {k + 1} of {args.repeats} "
                         f"({(time.monotonic() - started) / 60:.1f} min so far)")
            console.print("ingest")
            ingest = bench_ingest(servers, events, servers.workdir, run)
            console.print(f"  worker / empty Faust = {ingest['worker_over_empty_faust']:.2f}")
            rates = [float(r) for r in args.rates.split(",")]
            console.print("serving, sparse (the ingest run's state: 50k items)")
            serving = {"sparse": bench_serving(servers, servers.workdir, f"{run}-worker", rates,
                                               args.concurrency, args.seconds)}
            console.print("serving, dense (rows at their cap)")
            serving["dense"] = bench_serving(servers, servers.workdir, "dense", rates,
                                             args.concurrency, args.seconds)
            plain = bench_without_neighbours(servers, servers.workdir, args.concurrency,
                                             args.seconds)
            floor = serving["dense"]["endpoints"]["trending n=10 (the floor)"][-1]["achieved"]
            serving["dense"]["without_neighbours"] = plain | {
                "over_floor": plain["achieved"] / floor}
            console.print(f"  personalised n=10 without the neighbours: saturation "
                          f"{plain['achieved']:.0f} req/s ({plain['achieved'] / floor:.2f} "
                          "of the floor)")
            console.print("what the metrics cost (dense, with and without, alternated)")
            cost = bench_metrics_cost(servers, servers.workdir, args.seconds)
            console.print(f"  p99 {cost['p99_ms_enabled']:.2f} ms with, "
                          f"{cost['p99_ms_disabled']:.2f} ms without "
                          f"({cost['p99_with_over_without']:.3f}x; means "
                          f"{cost['mean_with_over_without']:.3f}x); instrumentation "
                          f"{cost['instrumentation_us_per_request']:.1f} µs per request")
            console.print("freshness")
            freshness = bench_freshness(servers, servers.workdir, run, args.samples)
            for name, figure in freshness.items():
                console.print(f"  {name}: p50 {figure['p50_ms']:.0f} ms, "
                              f"p99 {figure['p99_ms']:.0f} ms")
            results["runs"].append({"ingest": ingest, "serving": serving,
                                    "metrics_cost": cost, "freshness": freshness})
        console.rule("memory")
        results["memory"] = asyncio.run(bench_memory(
            servers.redis.url, [int(c) for c in args.memory.split(",")]))
    (RESULTS / "results.json").write_text(json.dumps(results, indent=2))  # the runs, kept
    results["summary"] = summarise(results["runs"])
    results["minutes"] = (time.monotonic() - started) / 60
    (RESULTS / "results.json").write_text(json.dumps(results, indent=2))
    plot(results, RESULTS)
    show(results, console)
    if not args.no_readme:
        update_readme(ROOT.parent / "README.md", markdown(results))
        console.print("README.md benchmark section updated")


if __name__ == "__main__":
    main()
