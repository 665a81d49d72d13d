"""No event lost, none counted twice: workers killed with SIGKILL mid-stream and a consumer
group rebalancing end with exactly the state of an undisturbed run over the same events.

Floating-point state (decayed scores) is compared with a relative tolerance of 1e-9: sums
taken in another order across partitions may differ in the last bits; everything else is
compared exactly.
"""

import asyncio
import random
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis

from streamrec.contract import RedisKeys, Settings, ensure_topics, produce_records
from streamrec.datasets import events, make_world
from tests.support.processes import ChildProcesses, wait_for
from tests.support.servers import Servers
from tests.support.state import differences, dump_state

EVENTS = 50_000
BAD_RECORDS = 50
WORLD = make_world(users=2000, categories=8, items_per_category=40)

pytestmark = pytest.mark.slow


def stream_records() -> Iterator[tuple[bytes, bytes]]:
    stream = events(WORLD, EVENTS, start_ms=Settings().decay_anchor_ms)
    for number, event in enumerate(stream):
        key = event.user_id.encode()
        if number % (EVENTS // BAD_RECORDS) == 0:
            yield key, b"\x00 not an event"
        yield key, event.model_dump_json().encode()


async def produce_stream(settings: Settings) -> None:
    await produce_records(settings, settings.events_topic, stream_records(), linger_ms=20)


@pytest.fixture(scope="module")
def stream(servers: Servers) -> Iterator[Settings]:
    """One topic holding 50k events and 50 bad records, read by each scenario's own group."""
    settings = servers.settings(topic_partitions=8)
    asyncio.run(ensure_topics(settings))
    asyncio.run(produce_stream(settings))
    yield settings


def group_of(stream: Settings, name: str) -> Settings:
    return stream.model_copy(update={"key_prefix": f"{stream.key_prefix}-{name}",
                                     "consumer_group": f"{stream.consumer_group}-{name}"})


def counter(client: redis.Redis, settings: Settings, name: str) -> int:
    return int(client.hget(RedisKeys(settings.key_prefix).counters, name) or 0)


def run_scenario(stream: Settings, name: str, logs: Path,
                 disturb: Callable[[ChildProcesses, Callable[[], int]], None]) -> dict:
    settings = group_of(stream, name)
    children = ChildProcesses(settings, logs)
    with redis.Redis.from_url(settings.redis_url) as client:
        def applied() -> int:
            return counter(client, settings, "events_applied")

        try:
            children.start_worker(f"{name}-first")
            disturb(children, applied)
            wait_for(lambda: applied() == EVENTS, f"all events applied ({name})", 300, 0.2)
        finally:
            children.stop_all()
        duplicates = counter(client, settings, "duplicates_skipped")
        total = applied()
    state = asyncio.run(_dump(settings))
    print(f"{name}: applied {total}, dead-lettered {BAD_RECORDS}, redelivered and skipped "
          f"{duplicates}")
    return {"state": _renamed(state, settings.key_prefix), "duplicates_skipped": duplicates,
            "applied": total}


async def _dump(settings: Settings) -> dict:
    from redis.asyncio import Redis

    client = Redis.from_url(settings.redis_url)
    try:
        return await dump_state(client, settings.key_prefix)
    finally:
        await client.aclose()


def _renamed(state: dict, prefix: str) -> dict:
    return {key.removeprefix(prefix): value for key, value in state.items()}


@pytest.fixture(scope="module")
def undisturbed(stream: Settings, tmp_path_factory: pytest.TempPathFactory) -> dict:
    return run_scenario(stream, "clean", tmp_path_factory.mktemp("clean"), lambda *_: None)


def test_sigkill_at_random_points_loses_and_doubles_nothing(
        stream: Settings, undisturbed: dict, tmp_path: Path) -> None:
    kill_points = sorted(random.Random(5).sample(range(5_000, EVENTS - 5_000), 3))

    def kill_and_restart(children: ChildProcesses, applied: Callable[[], int]) -> None:
        for number, point in enumerate(kill_points):
            wait_for(lambda p=point: applied() >= p, f"{point} events applied", 120, 0.01)
            children.processes[-1].send_signal(signal.SIGKILL)
            children.processes[-1].wait()
            children.start_worker(f"restarted-{number}")

    crashed = run_scenario(stream, "crash", tmp_path, kill_and_restart)
    assert undisturbed["applied"] == crashed["applied"] == EVENTS
    assert crashed["state"][":counters"]["dead_lettered"] == str(BAD_RECORDS)
    assert crashed["duplicates_skipped"] > 0  # records were redelivered, and skipped
    assert differences(undisturbed["state"], crashed["state"]) == []


def test_rebalance_as_workers_leave_and_join(stream: Settings, undisturbed: dict,
                                             tmp_path: Path) -> None:
    def rebalance(children: ChildProcesses, applied: Callable[[], int]) -> None:
        children.start_worker("second")
        wait_for(lambda: applied() >= EVENTS // 4, "a quarter of the events", 120, 0.01)
        children.processes[0].send_signal(signal.SIGTERM)  # leaves the group cleanly
        wait_for(lambda: applied() >= EVENTS // 2, "half of the events", 120, 0.01)
        children.start_worker("third")

    rebalanced = run_scenario(stream, "rebalance", tmp_path, rebalance)
    assert rebalanced["applied"] == EVENTS
    assert differences(undisturbed["state"], rebalanced["state"]) == []


def test_sigterm_stops_the_worker_cleanly_and_a_restart_resumes(
        stream: Settings, undisturbed: dict, tmp_path: Path) -> None:
    stopped: list[int | None] = []

    def stop_and_restart(children: ChildProcesses, applied: Callable[[], int]) -> None:
        wait_for(lambda: applied() >= EVENTS // 3, "a third of the events", 120, 0.01)
        worker = children.processes[-1]
        worker.send_signal(signal.SIGTERM)
        stopped.append(worker.wait(timeout=30))
        children.start_worker("after-sigterm")

    resumed = run_scenario(stream, "sigterm", tmp_path, stop_and_restart)
    assert stopped == [0]  # finished its batch and exited by itself
    assert resumed["applied"] == EVENTS
    assert differences(undisturbed["state"], resumed["state"]) == []


def test_no_offset_is_committed_before_redis_holds_its_record(
        stream: Settings, undisturbed: dict, tmp_path: Path) -> None:
    """With Redis's writes held back (CLIENT PAUSE WRITE) for longer than Faust's commit
    interval while events flow, what the group has committed in each partition must still be
    at most one past the applied guard (an early ack, e.g. by reading ahead, would break it:
    a version that did committed 2,053 with 2,033 applied)."""
    commits: list[dict[str, tuple[int, int]]] = []

    def pause_writes(children: ChildProcesses, applied: Callable[[], int]) -> None:
        settings = children.settings
        wait_for(lambda: applied() >= EVENTS // 5, "a fifth of the events", 120, 0.01)
        with redis.Redis.from_url(settings.redis_url) as client:
            client.execute_command("CLIENT", "PAUSE", 8000, "WRITE")
            try:
                time.sleep(6.0)  # over two commit intervals (Faust commits every 2.8 s)
                guard = client.hgetall(RedisKeys(settings.key_prefix).applied_offsets)
                committed = asyncio.run(committed_offsets(settings))
            finally:
                client.execute_command("CLIENT", "UNPAUSE")
        commits.append({source: (offset, int(guard.get(source.encode(), -1)))
                        for source, offset in committed.items()})

    paused = run_scenario(stream, "paused", tmp_path, pause_writes)
    assert commits and commits[0]  # the group had committed something before the pause
    for source, (committed, applied) in commits[0].items():
        assert committed <= applied + 1, source
    assert paused["applied"] == EVENTS
    assert differences(undisturbed["state"], paused["state"]) == []


async def committed_offsets(settings: Settings) -> dict[str, int]:
    """The consumer group's committed offsets (the next to read), per "topic:partition"; read
    by a consumer of the group that never joins it (the admin client's call fails on Tansu)."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap_servers,
                                group_id=settings.consumer_group, enable_auto_commit=False)
    await consumer.start()
    try:
        partitions = [TopicPartition(settings.events_topic, p)
                      for p in range(settings.topic_partitions)]
        committed = {tp: await consumer.committed(tp) for tp in partitions}
    finally:
        await consumer.stop()
    return {f"{tp.topic}:{tp.partition}": offset for tp, offset in committed.items()
            if offset is not None}
