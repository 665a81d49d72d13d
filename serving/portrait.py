"""A user as the service sees them: what a person asking "what do you hold about me?" gets,
and what an admin looks at. Read from the user's own keys and their contributions log; no
shared aggregate is needed (and none names the user)."""

from collections import Counter

import orjson
from pydantic import BaseModel, Field
from redis.asyncio import Redis

from streamrec.contract import SHOWN_SEPARATOR, RedisKeys, value_at
from streamrec.contract.clock import clock_ms

#: Served lists looked at, newest first, when counting the ones the user acted on.
LISTS_EXAMINED = 100


class RecentItem(BaseModel):
    item_id: str
    event_type: str
    at_ms: int


class CategoryAffinity(BaseModel):
    category: str
    affinity: float = Field(description="Decayed sum of event weights, as of now.")


class Portrait(BaseModel):
    user_id: str
    recent: list[RecentItem] = Field(description="Newest first.")
    top_categories: list[CategoryAffinity]
    stated_preferences: list[str]
    events_by_type: dict[str, int] = Field(description="Applied interactions the service "
                                           "still holds (as long as the user's state lives).")
    first_seen_ms: int | None
    last_seen_ms: int | None
    lists_shown: int
    lists_acted_on: int = Field(description=f"Of the newest {LISTS_EXAMINED} lists served and "
                                "still remembered, those with an event on one of their items.")


async def portrait(redis: Redis, keys: RedisKeys, user_id: str, *, anchor_ms: int,
                   affinity_half_life_ms: float, categories: int = 10) -> Portrait:
    async with redis.pipeline(transaction=False) as pipe:
        pipe.zrevrange(keys.user_recent(user_id), 0, -1, withscores=True)
        pipe.hgetall(keys.user_recent_types(user_id))
        pipe.zrevrange(keys.user_category_affinity(user_id), 0, categories - 1,
                       withscores=True)
        pipe.smembers(keys.user_preferences(user_id))
        pipe.lrange(keys.user_contributions(user_id), 0, -1)
        pipe.hget(keys.user_watermark(user_id), "event_time_ms")
        recent, types, affinities, stated, logged, last_seen = await pipe.execute()
    interactions, lists = [], []
    for entry in map(orjson.loads, logged):
        (interactions if len(entry) == 3 else lists).append(entry)
    now = clock_ms()
    return Portrait(
        user_id=user_id,
        recent=[RecentItem(item_id=item.decode(), event_type=types.get(item, b"").decode(),
                           at_ms=int(at)) for item, at in recent],
        top_categories=[CategoryAffinity(category=c.decode(), affinity=value_at(
            stored, now, anchor_ms, affinity_half_life_ms)) for c, stored in affinities],
        stated_preferences=sorted(c.decode() for c in stated),
        events_by_type=dict(Counter(event_type for _, event_type, _ in interactions)),
        first_seen_ms=min((at for _, _, at in interactions), default=None),
        last_seen_ms=int(float(last_seen)) if last_seen else None,
        lists_shown=len(lists),
        lists_acted_on=await acted_on(redis, keys, [rid for (rid,) in lists[-LISTS_EXAMINED:]]),
    )


async def acted_on(redis: Redis, keys: RedisKeys, recommendation_ids: list[str]) -> int:
    """Lists with at least one counted event: a field separator, event type, separator, item
    (apply_batch.lua's count_feedback), unlike the list's own fields (recommender, owner,
    experiment: one separator first) and interleaving's tallies (two separators first)."""
    async with redis.pipeline(transaction=False) as pipe:
        for recommendation_id in recommendation_ids:
            pipe.hkeys(keys.recommendation(recommendation_id))
        fields = await pipe.execute()
    marker = SHOWN_SEPARATOR.encode()

    def counted(field: bytes) -> bool:
        event_type, separated, _ = field.removeprefix(marker).partition(marker)
        return field.startswith(marker) and bool(event_type) and bool(separated)

    return sum(any(counted(f) for f in names) for names in fields)
