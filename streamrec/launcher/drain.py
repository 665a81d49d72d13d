"""How much of the topics the worker has not applied yet: what a graceful stop waits for.

The end of each partition is read from a fetch response's high watermark: the embedded
broker (Tansu 0.6) answers ListOffsets with the start of the last batch + 1 when that batch
held several records, so `end_offsets` alone would call a backlog drained too early.
The applied position is the worker's exactly-once guard in Redis (every record moves it:
applied, dead-lettered, duplicate or epoch).
"""

import asyncio

from aiokafka import AIOKafkaConsumer, TopicPartition
from redis.asyncio import Redis

from streamrec.contract import RedisKeys, Settings


async def partition_ends(settings: Settings, topics: list[str]) -> dict[str, int]:
    """"topic:partition" -> offset after its last record."""
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap_servers,
                                enable_auto_commit=False, fetch_max_wait_ms=20)
    await consumer.start()
    try:
        partitions = [TopicPartition(topic, p) for topic in topics
                      for p in sorted(consumer.partitions_for_topic(topic) or ())]
        if not partitions:
            return {}
        consumer.assign(partitions)
        listed = await consumer.end_offsets(partitions)
        for tp in partitions:  # a fetch near the (too low) listed end reports the true one
            consumer.seek(tp, max(listed[tp] - 1, 0))
        await consumer.getmany(*partitions, timeout_ms=500)
        return {f"{tp.topic}:{tp.partition}": max(consumer.highwater(tp) or 0, listed[tp])
                for tp in partitions}
    finally:
        await consumer.stop()


async def unapplied(settings: Settings) -> dict[str, int]:
    """Records per partition of the events and items topics that the worker has not yet
    applied (or dead-lettered); empty when it has caught up."""
    ends = await partition_ends(settings, [settings.events_topic, settings.items_topic])
    redis = Redis.from_url(settings.redis_url)
    try:
        applied = await redis.hmget(RedisKeys(settings.key_prefix).applied_offsets, list(ends))
    finally:
        await redis.aclose()
    behind = {source: end - (int(done) + 1 if done is not None else 0)
              for (source, end), done in zip(ends.items(), applied, strict=True)}
    return {source: count for source, count in behind.items() if count > 0}


async def wait_until_drained(settings: Settings, timeout: float) -> dict[str, int]:
    """Poll until nothing is left unapplied or `timeout` passes; returns what is left."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        left = await unapplied(settings)
        if not left or asyncio.get_running_loop().time() > deadline:
            return left
        await asyncio.sleep(0.2)
