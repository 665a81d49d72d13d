"""What users tell us about themselves: the categories they like.

Written by the service itself rather than through the stream: it is a statement to store as
given (an idempotent replace), not an interaction to learn from, and the user expects to see
it reflected on the very next request. The cold-start fallback reads it.
"""

from pydantic import BaseModel, Field
from redis.asyncio import Redis

from streamrec.contract import Label, RedisKeys

MAX_PREFERRED_CATEGORIES = 32


class Preferences(BaseModel):
    categories: list[Label] = Field(
        max_length=MAX_PREFERRED_CATEGORIES,
        description="Categories the user likes; an empty list forgets them.")


class Profiles:
    def __init__(self, redis: Redis, keys: RedisKeys, ttl_seconds: int) -> None:
        self._redis = redis
        self._keys = keys
        self._ttl_seconds = ttl_seconds

    async def save(self, user_id: str, preferences: Preferences) -> Preferences:
        key = self._keys.user_preferences(user_id)
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.delete(key)
            if preferences.categories:
                pipe.sadd(key, *preferences.categories)
                pipe.expire(key, self._ttl_seconds)
            await pipe.execute()
        return await self.load(user_id)

    async def load(self, user_id: str) -> Preferences:
        stored = await self._redis.smembers(self._keys.user_preferences(user_id))
        return Preferences(categories=sorted(c.decode() for c in stored))
