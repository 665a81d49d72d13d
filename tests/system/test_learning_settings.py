"""A worker started with other learning settings than the state was learned with applies
nothing: it stalls its partitions and says why (erasure could not take its events back out
exactly), and a worker with the recorded settings carries on from where the first stopped."""

import asyncio
from pathlib import Path

import redis

from streamrec.contract import InteractionEvent, RedisKeys, Settings, ensure_topics, produce_records
from tests.support.processes import ChildProcesses, wait_for
from tests.support.servers import Servers


def produce(settings: Settings, first: int, count: int) -> None:
    views = (InteractionEvent(event_id=f"v{n}", user_id=f"u{n % 3}", item_id=f"i{n % 7}",
                              event_type="view", timestamp=settings.decay_anchor_ms + n * 1000)
             for n in range(first, first + count))
    asyncio.run(produce_records(settings, settings.events_topic,
                                ((e.user_id.encode(), e.model_dump_json().encode())
                                 for e in views)))


def test_a_worker_with_other_learning_settings_stalls_and_says_why(servers: Servers,
                                                                     tmp_path: Path) -> None:
    settings = servers.settings(topic_partitions=2)
    asyncio.run(ensure_topics(settings))
    keys = RedisKeys(settings.key_prefix)
    children = ChildProcesses(settings, tmp_path)
    with redis.Redis.from_url(settings.redis_url) as client:
        def applied() -> int:
            return int(client.hget(keys.counters, "events_applied") or 0)

        try:
            produce(settings, 0, 20)
            children.start_worker("first")
            wait_for(lambda: applied() == 20, "the first 20 events applied", 60)
            children.stop_all()

            produce(settings, 20, 10)
            other = settings.model_copy(update={"earlier_session_pair": 1.0})
            children.start("worker", "other", other)
            stalled = wait_for(lambda: client.hgetall(keys.stalled_partitions),
                               "the other worker's partitions stalled", 60)
            assert all(b"earlier_session_pair: learned with 0.3, now 1.0" in reason
                       for reason in stalled.values())
            assert applied() == 20
            children.stop_all()

            children.start_worker("again")
            wait_for(lambda: applied() == 30, "the rest applied with the recorded settings", 60)
            wait_for(lambda: not client.hgetall(keys.stalled_partitions), "the stall cleared", 30)
        finally:
            children.stop_all()
