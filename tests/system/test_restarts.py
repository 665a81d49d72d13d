"""A restart with the persisted Redis and a fresh, empty broker (the embedded broker keeps
topics in memory, so its offsets start again at 0): new events are applied, once."""

import asyncio
import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from streamrec.contract import RedisKeys, Settings, ensure_topics, produce_records
from streamrec.servers import KafkaBroker, RedisServer
from tests.support.processes import ChildProcesses, wait_for
from tests.support.servers import Servers

pytestmark = pytest.mark.slow
EVENTS = 500


def views(first: int, count: int) -> Iterator[tuple[bytes, bytes]]:
    for k in range(first, first + count):
        user = f"u{k % 20}"
        yield user.encode(), json.dumps({
            "event_id": f"e{k}", "user_id": user, "item_id": f"i{k % 31}",
            "event_type": "view", "timestamp": 1_764_000_000_000 + k}).encode()


def run_once(settings: Settings, logs: Path, first: int) -> tuple[int, int]:
    """Topics, a worker, EVENTS events from `first` on; (events applied, skipped) after."""
    asyncio.run(ensure_topics(settings))
    children = ChildProcesses(settings, logs)
    counters = RedisKeys(settings.key_prefix).counters
    try:
        children.start_worker(f"worker-{first}")
        asyncio.run(produce_records(settings, settings.events_topic, views(first, EVENTS)))
        with redis.Redis.from_url(settings.redis_url) as client:
            def applied() -> int:
                return int(client.hget(counters, "events_applied") or 0)

            wait_for(lambda: applied() >= first + EVENTS, f"events {first}..", 60, 0.2)
            time.sleep(1.0)  # nothing more arrives
            return applied(), int(client.hget(counters, "duplicates_skipped") or 0)
    finally:
        children.stop_all()


def test_a_fresh_broker_after_a_restart_is_applied_not_skipped(servers: Servers,
                                                                tmp_path: Path) -> None:
    store = RedisServer(tmp_path, persist=True)
    store.start()
    same_names = servers.settings(redis_url=store.url)  # topics, keys and group as before
    try:
        for run in range(2):
            broker = KafkaBroker(tmp_path)
            broker.start()
            try:
                settings = same_names.model_copy(
                    update={"kafka_bootstrap_servers": broker.bootstrap_servers})
                assert run_once(settings, tmp_path, run * EVENTS) == ((run + 1) * EVENTS, 0)
            finally:
                broker.stop()
            store.stop()  # Redis restarts from its append-only file
            store.start()
    finally:
        store.stop()
