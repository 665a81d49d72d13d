"""Which Kafka clients work with the embedded broker (Tansu), for the README's compatibility
table: does each connect, and the median (of 5) time from producing an event until the service
serves that user's list with it as freshness watermark. Earlier reports of a 4 s delay for
batching clients were the worker's group join, so nothing is measured before a warm-up event
(produced with the project's own helper) is applied. Writes results/clients.json."""

import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from functools import partial
from importlib import import_module, metadata
from importlib.util import find_spec
from pathlib import Path

import aiokafka
import httpx
from run import machine

from streamrec import contract, output, servers

ITEMS = [f"item-{k}" for k in range(5)]
QUERY = "n=5&exclude=" + ",".join(ITEMS)  # an empty list: our polls publish no impressions
RUNS, POLL_SECONDS, GIVE_UP_SECONDS, KCAT = 5, 0.005, 10.0, "/usr/bin/kcat"
console = output.console()
Records = list[tuple[bytes, bytes]]
Client = tuple[Callable[[Records], None], Callable[[], object]]  # send (until acked), close


def events_for(user: str, count: int) -> tuple[Records, int]:
    """`count` events of a fresh user; the last carries the newest time, the one to wait for."""
    now = int(time.time() * 1000)
    return [(user.encode(), contract.InteractionEvent(
        event_id=uuid.uuid4().hex, user_id=user, item_id=ITEMS[k], event_type="view",
        timestamp=now - count + 1 + k).model_dump_json().encode()) for k in range(count)], now


def visible_ms(http: httpx.Client, base: str, user: str, stamp: int, started: float
               ) -> float | None:
    """Ms from `started` until the user's list has `stamp` as its watermark; None after 10 s."""
    while time.perf_counter() < started + GIVE_UP_SECONDS:
        body = http.get(f"{base}/v1/users/{user}/recommendations?{QUERY}").json()
        if body["freshness"]["event_time_ms"] == stamp:
            return (time.perf_counter() - started) * 1000
        time.sleep(POLL_SECONDS)
    return None


def aiokafka_client(bootstrap: str, topic: str, linger_ms: int, batched: bool) -> Client:
    runner = asyncio.Runner()  # the loop runs only while we send, as in a blocking client
    async def start() -> aiokafka.AIOKafkaProducer:
        producer = aiokafka.AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=linger_ms)
        await producer.start()
        return producer
    async def send(records: Records) -> None:
        for key, value in records:  # send: into the linger batch; send_and_wait: one by one
            await (producer.send if batched else producer.send_and_wait)(topic, value, key)
        await producer.flush()
    producer = runner.run(start())
    return (lambda records: runner.run(send(records)),
            lambda: (runner.run(producer.stop()), runner.close()))


def confluent_client(bootstrap: str, topic: str, linger_ms: int) -> Client:
    import confluent_kafka
    producer = confluent_kafka.Producer({"bootstrap.servers": bootstrap, "linger.ms": linger_ms})
    producer.list_topics(topic, timeout=5)  # raises KafkaException if it cannot connect
    return (lambda records: ([producer.produce(topic, key=k, value=v) for k, v in records],
                             producer.flush(GIVE_UP_SECONDS)), lambda: producer.flush(1))


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
        done = subprocess.run(["timeout", "-s", "KILL", "5", KCAT, "-P", "-b", bootstrap, "-t",
                               topic, "-K:"], capture_output=True,
                              input=b"".join(key + b":" + value + b"\n" for key, value in records))
        if done.returncode:
            error = [line for line in done.stderr.decode().splitlines() if "ERROR" in line]
            raise ConnectionError((error or ["no delivery within 5 s"])[0].strip())
    return send, lambda: None


CLIENTS = [  # name, client(bootstrap, topic), events per run
    ("aiokafka linger_ms=50, 5 events", partial(aiokafka_client, linger_ms=50, batched=True), 5),
    ("aiokafka send_and_wait", partial(aiokafka_client, linger_ms=0, batched=False), 1),
    ("confluent-kafka linger.ms=0", partial(confluent_client, linger_ms=0), 1),
    ("confluent-kafka linger.ms=50, 5 events", partial(confluent_client, linger_ms=50), 5),
    ("kafka-python", kafka_python_client, 1),
    ("kcat (Debian)", kcat_client, 1),
]


def measure(name: str, make: Callable[[], Client], count: int, base: str) -> dict:
    row, timings, close = {"client": name, "events_per_run": count}, [], lambda: None
    try:
        send, close = make()
        with httpx.Client(timeout=5) as http:
            for run in range(RUNS):
                user = f"{name.split()[0]}-{run}-{uuid.uuid4().hex[:8]}"
                records, stamp = events_for(user, count)
                started = time.perf_counter()
                send(records)
                timings.append(visible_ms(http, base, user, stamp, started))
                console.print(f"  {name}, run {run + 1}:",
                              "not visible" if timings[-1] is None else f"{timings[-1]:.0f} ms")
    except Exception as error:  # ImportError: not installed; kcat: the first produce fails
        console.print(f"  {name}: {error!r}")
        row.update({"connects": "not installed"} if isinstance(error, ImportError)
                   else {"error": str(error) or repr(error)})
    finally:
        close()
    visible = [t for t in timings if t is not None]
    return {"connects": "yes" if timings else "no", **row, "timings_ms": timings,
            "median_ms": statistics.median(visible) if visible else None}


def versions() -> dict:
    found = {name: metadata.version(name) for name, module in (("aiokafka", "aiokafka"), (
        "confluent-kafka", "confluent_kafka"), ("kafka-python", "kafka")) if find_spec(module)}
    if "confluent-kafka" in found:
        found["librdkafka"] = import_module("confluent_kafka").libversion()[0]
    if Path(KCAT).exists():  # its last line: "Version 1.7.1 (..., librdkafka 2.0.2 ...)"
        found["kcat"] = subprocess.run([KCAT, "-V"], capture_output=True,
                                       text=True).stdout.strip().splitlines()[-1]
    return found


def warm_up(settings: contract.Settings, base: str) -> float:
    """The catalogue, then one event via the project's helper; seconds until both applied."""
    started = time.perf_counter()
    catalogue = [contract.ItemEvent(item_id=item, categories=["c0"]) for item in ITEMS]
    asyncio.run(contract.produce_records(settings, settings.items_topic, [
        (item.item_id.encode(), item.model_dump_json().encode()) for item in catalogue]))
    records, stamp = events_for("warm-up", 1)
    asyncio.run(contract.produce_records(settings, settings.events_topic, records))
    with httpx.Client(timeout=5) as http:
        for _ in range(12):  # of 10 s each
            shown = visible_ms(http, base, "warm-up", stamp, time.perf_counter()) is not None
            counters = http.get(f"{base}/v1/metrics").json()["counters"]
            if shown and counters.get("items_applied", 0) >= len(ITEMS):
                return time.perf_counter() - started
    raise TimeoutError("the worker did not apply the warm-up in 2 minutes")


def table(rows: list[dict]) -> str:
    lines = ["| client | connects | median produce→visible ms | runs |", "|---|---|---|---|"]
    for row in rows:
        runs = row["timings_ms"]
        median = (f"{row['median_ms']:.0f}" if row["median_ms"] is not None
                  else "not visible in 10 s" if runs else "—")
        connects = row["connects"] + (f" ({row['error']})" if "error" in row else "")
        lines.append(f"| {row['client']} | {connects} | {median} | "
                     f"{sum(t is not None for t in runs)} of {len(runs)} visible |")
    return "\n".join(lines)


def main() -> None:
    results = {"date": time.strftime("%Y-%m-%d %H:%M"), "machine": machine(),
               "load_average": os.getloadavg(), "versions": versions()}
    with servers.embedded_servers() as running:
        settings = contract.Settings(kafka_bootstrap_servers=running.broker.bootstrap_servers,
                                     redis_url=running.redis.url, http_port=servers.free_port())
        asyncio.run(contract.ensure_topics(settings))
        env = {**servers.child_environment(settings), "STREAMREC_AUTH": "disabled"}
        base = f"http://127.0.0.1:{settings.http_port}"
        worker, service = [servers.start_child([sys.executable, "-m", "streamrec", *args],
                                               running.workdir / f"{args[0]}.log", env)
                           for args in (["worker"], ["serve", "--log-level", "warning"])]
        try:
            servers.wait_until_healthy(base, service)
            console.print(f"warm-up applied after {warm_up(settings, base):.1f} s")
            results["clients"] = [measure(name, partial(client, settings.kafka_bootstrap_servers,
                                                        settings.events_topic), count, base)
                                  for name, client, count in CLIENTS]
        finally:
            servers.stop_child(service)
            servers.stop_child(worker)
    console.print(table(results["clients"]), markup=False, highlight=False, soft_wrap=True)
    (Path(__file__).parent / "results" / "clients.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
