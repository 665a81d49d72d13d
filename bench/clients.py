"""Which Kafka clients work with the embedded broker (Tansu), and how fast their events show.

For the README's compatibility table: per client, does it connect, and the median (of 5)
time from producing an event to the service serving that user's list with the event's time as
its freshness watermark. Earlier reports of a 4 s delay for batching clients turned out to be
the worker joining its consumer group: nothing is measured until a warm-up event (produced with
the project's own helper) is applied. `python bench/clients.py` writes results/clients.json.
"""

import asyncio
import contextlib
import json
import os
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import aiokafka
import httpx
import redis
from rich.console import Console
from run import machine

from streamrec import contract, servers

RESULTS = Path(__file__).resolve().parent / "results"
ITEMS = [f"item-{k}" for k in range(5)]
RUNS, POLL_SECONDS, GIVE_UP_SECONDS = 5, 0.005, 10.0
KCAT = "/usr/bin/kcat"
console = Console()
Records = list[tuple[bytes, bytes]]
Client = tuple[Callable[[Records], None], Callable[[], object]]  # send (until acked), close


def events_for(user: str, count: int) -> tuple[Records, int]:
    """`count` events of a fresh user; the last carries the newest time, the one to wait for."""
    now = int(time.time() * 1000)
    return [(user.encode(), contract.InteractionEvent(
        event_id=uuid.uuid4().hex, user_id=user, item_id=ITEMS[k], event_type="view",
        timestamp=now - count + 1 + k).model_dump_json().encode()) for k in range(count)], now


def visible_at(http: httpx.Client, base: str, user: str, stamp: int) -> float | None:
    """perf_counter() when the user's list carries `stamp` as its watermark; None after 10 s."""
    deadline = time.perf_counter() + GIVE_UP_SECONDS
    while time.perf_counter() < deadline:
        body = http.get(f"{base}/v1/users/{user}/recommendations?n=5").json()
        if body["freshness"]["event_time_ms"] == stamp:
            return time.perf_counter()
        time.sleep(POLL_SECONDS)
    return None


def aiokafka_client(bootstrap: str, topic: str, linger_ms: int, batched: bool) -> Client:
    runner = asyncio.Runner()  # the loop runs only while we send, as in a blocking client

    async def start() -> aiokafka.AIOKafkaProducer:
        producer = aiokafka.AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=linger_ms)
        await producer.start()
        return producer

    producer = runner.run(start())

    async def send(records: Records) -> None:
        for key, value in records:
            await (producer.send if batched else producer.send_and_wait)(topic, key=key,
                                                                          value=value)
        await producer.flush()

    return (lambda records: runner.run(send(records)),
            lambda: (runner.run(producer.stop()), runner.close()))


def confluent_client(bootstrap: str, topic: str, linger_ms: int) -> Client:
    import confluent_kafka

    producer = confluent_kafka.Producer({"bootstrap.servers": bootstrap, "linger.ms": linger_ms})
    producer.list_topics(topic, timeout=5)  # raises KafkaException if it cannot connect

    def send(records: Records) -> None:
        for key, value in records:
            producer.produce(topic, key=key, value=value)
        if producer.flush(GIVE_UP_SECONDS):
            raise RuntimeError("not delivered")

    return send, lambda: producer.flush(1)


def kafka_python_client(bootstrap: str, topic: str) -> Client:
    import kafka

    producer = kafka.KafkaProducer(bootstrap_servers=bootstrap, linger_ms=0)
    return (lambda records: [producer.send(topic, key=k, value=v).get(GIVE_UP_SECONDS)
                             for k, v in records], producer.close)


def kcat_client(bootstrap: str, topic: str) -> Client:
    """One kcat process per send (how it is used from a shell); its start is in the time."""
    if not Path(KCAT).exists():
        raise ImportError(KCAT)

    def send(records: Records) -> None:
        lines = b"".join(key + b":" + value + b"\n" for key, value in records)
        try:
            done = subprocess.run([KCAT, "-P", "-b", bootstrap, "-t", topic, "-K:"],
                                  input=lines, capture_output=True, timeout=5)
            errors, failed = done.stderr, done.returncode != 0
        except subprocess.TimeoutExpired as timeout:
            errors, failed = timeout.stderr or b"", True
        if failed:
            error = [line for line in errors.decode().splitlines() if "ERROR" in line]
            raise ConnectionError((error or ["no delivery within 5 s"])[0].strip())

    return send, lambda: None


def measure(name: str, make: Callable[[], Client], count: int, base: str) -> dict:
    row = {"client": name, "events_per_run": count, "timings_ms": []}
    try:
        send, close = make()
    except ImportError as error:
        console.print(f"  {name}: not installed ({error})")
        return {**row, "connects": "not installed"}
    except Exception as error:
        console.print(f"  {name}: cannot connect: {error!r}")
        return {**row, "connects": "no", "error": repr(error)}
    with httpx.Client(timeout=5) as http:
        try:
            for run in range(RUNS):
                user = f"{name.split()[0]}-{run}-{uuid.uuid4().hex[:8]}"
                records, stamp = events_for(user, count)
                started = time.perf_counter()
                send(records)
                seen = visible_at(http, base, user, stamp)
                row["timings_ms"].append(None if seen is None else (seen - started) * 1000)
                console.print(f"  {name}, run {run + 1}: {row['timings_ms'][-1]} ms")
                time.sleep(0.2)
        except Exception as error:  # kcat: its first produce tells whether it connects
            console.print(f"  {name}: failed: {error}")
            row["error"] = str(error)
        finally:
            close()
    return {**row, "connects": "yes" if row["timings_ms"] else "no"}


def versions() -> dict:
    found = dict.fromkeys(["confluent_kafka", "librdkafka", "kafka_python", "kcat"])
    with contextlib.suppress(ImportError):
        import confluent_kafka
        found.update(confluent_kafka=confluent_kafka.version()[0],
                     librdkafka=confluent_kafka.libversion()[0])
    with contextlib.suppress(ImportError):
        import kafka
        found["kafka_python"] = kafka.__version__
    if Path(KCAT).exists():  # its last line: "Version 1.7.1 (..., librdkafka 2.0.2 ...)"
        found["kcat"] = subprocess.run([KCAT, "-V"], capture_output=True,
                                       text=True).stdout.strip().splitlines()[-1]
    return {"aiokafka": aiokafka.__version__, **found}


def warm_up(settings: contract.Settings, base: str) -> float:
    """The catalogue, then one event via the project's helper; seconds until both applied."""
    started = time.perf_counter()
    asyncio.run(contract.produce_records(settings, settings.items_topic, [
        (item.encode(), contract.ItemEvent(item_id=item, categories=["c0"]).model_dump_json().encode())
        for item in ITEMS]))
    records, stamp = events_for("warm-up", 1)
    asyncio.run(contract.produce_records(settings, settings.events_topic, records))
    store, counters = redis.Redis.from_url(settings.redis_url), contract.RedisKeys(settings.key_prefix)
    with httpx.Client(timeout=5) as http:
        while (visible_at(http, base, "warm-up", stamp) is None
               or int(store.hget(counters.counters, "items_applied") or 0) < len(ITEMS)):
            if time.perf_counter() - started > 120:
                raise TimeoutError("the worker did not apply the warm-up in 120 s")
    store.close()
    return time.perf_counter() - started


def table(rows: list[dict]) -> str:
    lines = ["| client | connects | median produce→visible ms | runs |", "|---|---|---|---|"]
    for row in rows:
        seen = [t for t in row["timings_ms"] if t is not None]
        row["median_ms"] = statistics.median(seen) if seen else None
        median = (f"{row['median_ms']:.0f}" if seen
                  else "not visible in 10 s" if row["timings_ms"] else "—")
        connects = row["connects"] + (f" ({row['error']})" if "error" in row else "")
        lines.append(f"| {row['client']} | {connects} | {median} | "
                     f"{len(seen)}/{len(row['timings_ms'])} visible |")
    return "\n".join(lines)


def main() -> None:
    RESULTS.mkdir(exist_ok=True)
    results = {"date": time.strftime("%Y-%m-%d %H:%M"), "machine": machine(),
               "load_average": os.getloadavg(), "versions": versions(), "clients": []}
    with servers.embedded_servers() as running:
        settings = contract.Settings(kafka_bootstrap_servers=running.broker.bootstrap_servers,
                                     redis_url=running.redis.url, http_port=servers.free_port())
        asyncio.run(contract.ensure_topics(settings))
        env, logs = servers.child_environment(settings), running.workdir
        worker = servers.start_child([sys.executable, "-m", "streamrec", "worker"],
                             logs / "worker.log", env)
        service = servers.start_child([sys.executable, "-m", "streamrec", "serve", "--log-level",
                               "warning"], logs / "service.log", env)
        base, at, topic = (f"http://127.0.0.1:{settings.http_port}",
                           settings.kafka_bootstrap_servers, settings.events_topic)
        try:
            servers.wait_until_healthy(base, service)
            console.print(f"warm-up applied after {warm_up(settings, base):.1f} s")
            for name, make, count in [
                ("aiokafka linger_ms=50, 5 events",
                 lambda: aiokafka_client(at, topic, 50, True), 5),
                ("aiokafka send_and_wait", lambda: aiokafka_client(at, topic, 0, False), 1),
                ("confluent-kafka linger.ms=0", lambda: confluent_client(at, topic, 0), 1),
                ("confluent-kafka linger.ms=50, 5 events",
                 lambda: confluent_client(at, topic, 50), 5),
                ("kafka-python", lambda: kafka_python_client(at, topic), 1),
                ("kcat (Debian)", lambda: kcat_client(at, topic), 1),
            ]:
                results["clients"].append(measure(name, make, count, base))
        finally:
            servers.stop_child(service)
            servers.stop_child(worker)
    console.print(table(results["clients"]), markup=False, highlight=False)
    (RESULTS / "clients.json").write_text(json.dumps(results, indent=2))
    console.print(f"wrote {RESULTS / 'clients.json'}")


if __name__ == "__main__":
    main()
