"""Retention: users inactive for longer than STREAMREC_USER_RETENTION_DAYS are erased, by the
same exact path as a request (a forget record on the events topic, in order with the user's
events), so their contributions to shared rankings go too, not only their own keys.

Inactivity is read from each user's watermark (the event time of their newest applied
event). The watermark expires with the rest of the user's state
(STREAMREC_USER_STATE_TTL_DAYS), which is why the retention must be shorter than that.
"""

from collections.abc import Iterable

from redis.asyncio import Redis

from streamrec.contract import (
    ForgetRequest,
    RedisKeys,
    Settings,
    forget_request,
    produce_records,
)
from streamrec.contract.clock import clock_ms

#: Users whose watermark is read per round trip while scanning.
SCAN_BATCH = 500


async def inactive_users(redis: Redis, settings: Settings, now_ms: int) -> list[str]:
    """Users whose newest applied event is older than the retention, as of `now_ms`."""
    if settings.user_retention_days is None:
        return []
    keys = RedisKeys(settings.key_prefix)
    head, tail = keys.templates()["user_watermark"]
    oldest = now_ms - settings.user_retention_days * 86_400_000
    found: list[str] = []
    batch: list[bytes] = []

    async def check(watermarks: list[bytes]) -> None:
        async with redis.pipeline(transaction=False) as pipe:
            for watermark in watermarks:
                pipe.hget(watermark, "event_time_ms")
            times = await pipe.execute()
        found.extend(key.decode()[len(head):-len(tail)]
                     for key, at in zip(watermarks, times, strict=True)
                     if at is not None and int(float(at)) < oldest)

    async for watermark in redis.scan_iter(match=f"{head}*{tail}", count=SCAN_BATCH):
        batch.append(watermark)
        if len(batch) >= SCAN_BATCH:
            await check(batch)
            batch = []
    if batch:
        await check(batch)
    return sorted(found)


async def request_erasures(settings: Settings, users: Iterable[str]) -> list[ForgetRequest]:
    """Put a forget record for each user (as stored) on the events topic; returns the
    requests."""
    requests = [forget_request(user) for user in users]
    await produce_records(settings, settings.events_topic, [
        (request.user_id.encode(), request.model_dump_json().encode()) for request in requests])
    return requests


async def sweep(settings: Settings, now_ms: int | None = None) -> list[ForgetRequest]:
    """Request the erasure of every user inactive for longer than the retention as of
    `now_ms` (default: now; a test's clock)."""
    now_ms = clock_ms(now_ms)
    redis = Redis.from_url(settings.redis_url)
    try:
        users = await inactive_users(redis, settings, now_ms)
    finally:
        await redis.aclose()
    return await request_erasures(settings, users) if users else []
