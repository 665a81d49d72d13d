"""How much of the topics the worker has not applied yet: what a graceful stop waits for
(measured as `streamrec.contract.progress` says)."""

import asyncio

from redis.asyncio import Redis

from streamrec.contract import RedisKeys, Settings, partition_ends, records_behind


async def unapplied(settings: Settings) -> dict[str, int]:
    """Records per partition of the events and items topics that the worker has not yet
    applied (or dead-lettered); empty when it has caught up."""
    ends = await partition_ends(settings, [settings.events_topic, settings.items_topic])
    redis = Redis.from_url(settings.redis_url)
    try:
        stored = await redis.hmget(RedisKeys(settings.key_prefix).applied_offsets, list(ends))
    finally:
        await redis.aclose()
    applied = {source: int(done) for source, done in zip(ends, stored, strict=True)
               if done is not None}
    return {source: count for source, count in records_behind(ends, applied).items()
            if count > 0}


async def wait_until_drained(settings: Settings, timeout: float) -> dict[str, int]:
    """Poll until nothing is left unapplied or `timeout` passes; returns what is left."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        left = await unapplied(settings)
        if not left or asyncio.get_running_loop().time() > deadline:
            return left
        await asyncio.sleep(0.2)
