"""Reads the recommender state from Redis: one pipelined round trip per step, nothing else."""

from collections.abc import Sequence
from dataclasses import dataclass

from redis.asyncio import Redis

from streamrec.contract import LIST_SEPARATOR, RedisKeys


@dataclass(frozen=True, slots=True)
class Watermark:
    event_time_ms: int | None
    applied_at_ms: int | None


@dataclass(frozen=True, slots=True)
class UserHistory:
    recent: list[tuple[str, str]]  # (item, event type of the latest interaction), newest first
    watermark: Watermark


@dataclass(frozen=True, slots=True)
class ItemFacts:
    """What filtering and scoring need to know about a list of items."""

    user_counts: dict[str, float]
    seen: set[str]
    unavailable: set[str]
    outside_category: set[str]


def _watermark(fields: dict[bytes, bytes]) -> Watermark:
    def field(name: bytes) -> int | None:
        return int(float(fields[name])) if name in fields else None

    return Watermark(field(b"event_time_ms"), field(b"applied_at_ms"))


def _text(values: Sequence[bytes]) -> list[str]:
    return [v.decode() for v in values]


class StateReader:
    def __init__(self, redis: Redis, keys: RedisKeys) -> None:
        self.redis = redis
        self.keys = keys

    async def user_history(self, user_id: str, length: int) -> UserHistory:
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.zrevrange(self.keys.user_recent(user_id), 0, length - 1)
            pipe.hgetall(self.keys.user_recent_types(user_id))
            pipe.hgetall(self.keys.user_watermark(user_id))
            recent, types, watermark = await pipe.execute()
        return UserHistory(
            [(item.decode(), types.get(item, b"").decode()) for item in recent],
            _watermark(watermark),
        )

    async def global_watermark(self) -> Watermark:
        return _watermark(await self.redis.hgetall(self.keys.watermark))

    async def cooccurrence_rows(
        self, items: Sequence[str], depth: int
    ) -> tuple[dict[str, list[tuple[str, float]]], dict[str, float], dict[str, str]]:
        """Top-`depth` co-occurring items per item, plus n_i and title of each (non-empty)."""
        async with self.redis.pipeline(transaction=False) as pipe:
            for item in items:
                pipe.zrevrange(self.keys.item_cooccurrence(item), 0, depth - 1, withscores=True)
            for item in items:
                pipe.hget(self.keys.item_meta(item), "title")
            pipe.hmget(self.keys.item_user_counts, list(items))
            replies = await pipe.execute()
        count = len(items)
        rows = {item: [(j.decode(), c) for j, c in replies[k]] for k, item in enumerate(items)}
        titles = {item: t.decode() for item, t in zip(items, replies[count:2 * count], strict=True)
                  if t}
        counts = replies[2 * count]
        user_counts = {item: float(n) for item, n in zip(items, counts, strict=True) if n}
        return rows, user_counts, titles

    async def item_facts(
        self, items: Sequence[str], user_id: str | None, category: str | None
    ) -> ItemFacts:
        if not items:
            return ItemFacts({}, set(), set(), set())
        wanted = list(items)
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.hmget(self.keys.item_user_counts, wanted)
            pipe.smismember(self.keys.unavailable_items, wanted)
            if user_id is not None:
                pipe.zmscore(self.keys.user_affinity(user_id), wanted)
            if category is not None:
                pipe.smismember(self.keys.category_items(category), wanted)
            replies = iter(await pipe.execute())
        counts, unavailable = next(replies), next(replies)
        seen = next(replies) if user_id is not None else [None] * len(wanted)
        in_category = next(replies) if category is not None else [1] * len(wanted)
        return ItemFacts(
            user_counts={i: float(n) for i, n in zip(wanted, counts, strict=True) if n},
            seen={i for i, s in zip(wanted, seen, strict=True) if s is not None},
            unavailable={i for i, u in zip(wanted, unavailable, strict=True) if u},
            outside_category={i for i, c in zip(wanted, in_category, strict=True) if not c},
        )

    async def ranking_page(self, key: str, start: int, count: int) -> list[tuple[str, float]]:
        page = await self.redis.zrevrange(key, start, start + count - 1, withscores=True)
        return [(item.decode(), score) for item, score in page]

    async def item_categories(self, item_id: str) -> list[str]:
        joined = await self.redis.hget(self.keys.item_meta(item_id), "categories")
        return [c for c in (joined or b"").decode().split(LIST_SEPARATOR) if c]

    async def recommender_metrics(self) -> dict[str, dict[str, int]]:
        names = sorted(_text(await self.redis.smembers(self.keys.recommenders)))
        async with self.redis.pipeline(transaction=False) as pipe:
            for name in names:
                pipe.hgetall(self.keys.recommender_metrics(name))
            replies = await pipe.execute()
        return {name: {k.decode(): int(v) for k, v in counts.items()}
                for name, counts in zip(names, replies, strict=True)}

    async def counters(self) -> dict[str, int]:
        counters = await self.redis.hgetall(self.keys.counters)
        return {name.decode(): int(value) for name, value in counters.items()}
