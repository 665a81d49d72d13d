"""Applies batches of validated records to Redis in one atomic server-side script call.

Knows nothing about Faust: the worker, the evaluator and the tests all call `apply`.
"""

import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from importlib.resources import files

import orjson
from redis.asyncio import Redis

from streamrec.contract import (
    LIST_SEPARATOR,
    ImpressionEvent,
    InteractionEvent,
    ItemEvent,
    RedisKeys,
    Settings,
    half_life_ms,
)

APPLY_BATCH_LUA = files("stream_app").joinpath("lua/apply_batch.lua").read_text()


@dataclass(frozen=True, slots=True)
class StreamRecord:
    """A record at its stream position; `payload` is None when it went to dead-letter."""

    source: str  # "topic:partition"
    offset: int
    payload: InteractionEvent | ImpressionEvent | ItemEvent | None


@dataclass(frozen=True, slots=True)
class BatchResult:
    applied: int
    duplicates_skipped: int
    dead_lettered: int


def _encode(record: StreamRecord) -> list[object]:
    position = [record.source, record.offset]
    payload = record.payload
    if payload is None:
        return ["rejected", *position]
    if isinstance(payload, ItemEvent):
        return ["item", *position, payload.item_id, payload.categories, payload.tags,
                payload.available, payload.title or ""]
    if isinstance(payload, ImpressionEvent):
        return ["impression", *position, payload.user_id, payload.item_ids, payload.timestamp,
                payload.recommendation_id or "", payload.recommender]
    return ["interaction", *position, payload.user_id, payload.item_id, payload.event_type,
            payload.timestamp, payload.recommendation_id or ""]


class StateWriter:
    def __init__(self, redis: Redis, settings: Settings) -> None:
        self._redis = redis
        self._keys = RedisKeys(settings.key_prefix)
        self._script = redis.register_script(APPLY_BATCH_LUA)
        self._config = {
            "keys": self._keys.templates(),
            "list_separator": LIST_SEPARATOR,
            "event_weights": settings.event_weights,
            "pair_window": settings.pair_window,
            "history_length": settings.history_length,
            "cooccurrence_row_cap": settings.cooccurrence_row_cap,
            "sequence_window": settings.sequence_window,
            # cjson has no None: 0 means counts never decay.
            "cooccurrence_half_life_ms": half_life_ms(settings.cooccurrence_half_life_days)
            if settings.cooccurrence_half_life_days else 0,
            "affinity_half_life_ms": half_life_ms(settings.affinity_half_life_days),
            "trending_half_life_ms": half_life_ms(settings.trending_half_life_days),
            "decay_anchor_ms": settings.decay_anchor_ms,
            "recommendation_ttl_seconds": settings.recommendation_ttl_seconds,
        }

    async def apply(
        self, records: Sequence[StreamRecord], applied_at_ms: int | None = None
    ) -> BatchResult:
        """Apply `records` (in stream order) exactly once; redelivered positions are skipped."""
        if not records:
            return BatchResult(0, 0, 0)
        config = dict(self._config, applied_at_ms=applied_at_ms or int(time.time() * 1000))
        applied, skipped, dead_lettered = await self._script(
            args=[orjson.dumps(config), orjson.dumps([_encode(r) for r in records])]
        )
        return BatchResult(int(applied), int(skipped), int(dead_lettered))

    async def highest_applied(self, sources: Iterable[str]) -> dict[str, int]:
        """The exactly-once guard's position per source: records at or below it are done."""
        wanted = list(sources)
        stored = await self._redis.hmget(self._keys.applied_offsets, wanted)
        return {source: int(o) for source, o in zip(wanted, stored, strict=True) if o is not None}
