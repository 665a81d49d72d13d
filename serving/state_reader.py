"""Reads the recommender state from Redis: one pipelined round trip per step, nothing else."""

from collections import Counter
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from importlib.resources import files

import orjson
from redis.asyncio import Redis

from streamrec.contract import (
    BLEND_TRIALS_FIELD,
    LIST_SEPARATOR,
    SHARED_FIELD,
    SHOWN_SEPARATOR,
    RedisKeys,
    Reused,
    Settings,
    Similarity,
    learned_under_another_key,
    lua_script,
)

from .scoring import SOURCES, SYMMETRIC_ALPHA, BlendEvidence, ScoredItem, Weighting


@dataclass(frozen=True, slots=True)
class Watermark:
    event_time_ms: int | None
    applied_at_ms: int | None


@dataclass(frozen=True, slots=True)
class UserHistory:
    recent: list[tuple[str, str]]  # (item, event type of the latest interaction), newest first
    times_ms: list[int]  # of each recent item's latest interaction
    watermark: Watermark


@dataclass(frozen=True, slots=True)
class Scored:
    """What score_candidates.lua chose: the blend's best, each source's best alone
    (unscaled), and the voters' titles where the catalogue has one."""

    blended: list[ScoredItem]
    by_source: dict[str, list[tuple[str, float]]]
    titles: dict[str, str]
    #: per judged weighting, in the order asked, its best item ids (the shadow lists)
    by_weighting: list[list[str]]


def _pairs(flat: Sequence[bytes]) -> list[tuple[str, float]]:
    values = iter(flat)
    return [(item.decode(), float(count)) for item, count in zip(values, values, strict=True)]


LUA = files("serving").joinpath("lua")
HIDDEN_ITEMS_LUA = LUA.joinpath("hidden_items.lua").read_text()
SCORE_CANDIDATES_LUA = lua_script(HIDDEN_ITEMS_LUA,
                                  LUA.joinpath("score_candidates.lua").read_text())
TOP_OF_RANKING_LUA = lua_script(HIDDEN_ITEMS_LUA, LUA.joinpath("top_of_ranking.lua").read_text())


#: How long a process reuses the global watermark it read (see `global_watermark`).
GLOBAL_WATERMARK_REUSE_SECONDS = 0.1
#: How long a process reuses the learning settings it read (the pseudonym key's check).
SETTINGS_REUSE_SECONDS = 1.0


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
        self._score_candidates = redis.register_script(SCORE_CANDIDATES_LUA)
        self._top_of_ranking = redis.register_script(TOP_OF_RANKING_LUA)
        self._script_config = orjson.dumps({"keys": keys.templates(),
                                            "shared_field": SHARED_FIELD})
        self._global_watermark: Reused[Watermark] = Reused(GLOBAL_WATERMARK_REUSE_SECONDS)
        self._learning_settings: Reused[bytes | None] = Reused(SETTINGS_REUSE_SECONDS)

    async def user_history(self, user_id: str, length: int) -> UserHistory:
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.zrevrange(self.keys.user_recent(user_id), 0, length - 1, withscores=True)
            pipe.hgetall(self.keys.user_recent_types(user_id))
            pipe.hgetall(self.keys.user_watermark(user_id))
            recent, types, watermark = await pipe.execute()
        return UserHistory(
            [(item.decode(), types.get(item, b"").decode()) for item, _ in recent],
            [int(at) for _, at in recent],
            _watermark(watermark),
        )

    async def liked_categories(self, user_id: str, learned: int) -> list[str]:
        """The categories the user stated (preferences), then their `learned` strongest by
        decayed affinity."""
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.smembers(self.keys.user_preferences(user_id))
            pipe.zrevrange(self.keys.user_category_affinity(user_id), 0, learned - 1)
            stated, strongest = await pipe.execute()
        return list(dict.fromkeys([*sorted(_text(stated)), *_text(strongest)]))

    async def global_watermark(self) -> Watermark:
        """Read at most every `GLOBAL_WATERMARK_REUSE_SECONDS`: a busy process then saves a
        round trip per global list, and its freshness can only overstate the lag."""
        async def read() -> Watermark:
            return _watermark(await self.redis.hgetall(self.keys.watermark))

        return await self._global_watermark.get(read)

    async def scored(self, voters: Sequence[tuple[str, float, float]], *, depth: int,
                     similarity: Similarity, weights: Weighting, top: int,
                     alpha: float = SYMMETRIC_ALPHA, exponent: float = 1.0,
                     per_source: int = 0,
                     weightings: Sequence[Weighting] = (),
                     per_weighting: int = 0, neighbour_count: int = 0,
                     neighbour_depth: int = 0,
                     neighbour_support: int = Settings.model_fields["neighbour_support"].default,
                     user_id: str | None = None,
                     category: str | None = None, exclude: Collection[str] = ()) -> Scored:
        """The voters' (item, co-occurrence vote, sequence vote; newest first) candidates
        scored in Redis (serving/scoring.py describes the math): the `top` of the blend with
        `weights`, with `per_source` each source's best alone, and the best `per_weighting`
        ids of each of `weightings` (the self-tuning blend's shadow lists). Candidates
        `user_id` has seen, unavailable ones and (with `category`) others are never scored;
        `exclude`d ones are never chosen. Rows are read `depth` deep. `alpha` is cosine's
        exponent of the voter's n_i (0.5: plain cosine); a co-occurrence term is
        vote * similarity^`exponent`. The `neighbour_count` heaviest neighbours vote, found among
        the strongest voter's `neighbour_depth` newest users (fewer for weaker voters), for
        the items at least `neighbour_support` of them have."""
        request = orjson.dumps({
            "user": user_id or "", "category": category or "", "depth": depth,
            "similarity": similarity, "alpha": alpha, "exponent": exponent, "top": top,
            "per_source": per_source,
            "weights": weights, "weightings": weightings, "weighting_top": per_weighting,
            "neighbours": {"count": neighbour_count, "depth": neighbour_depth,
                           "support": neighbour_support},
            "voters": voters, "exclude": list(exclude)})
        blended, *alone, titles, by_weighting = await self._score_candidates(
            args=[self._script_config, request])
        flat = iter(blended)
        return Scored(
            blended=[ScoredItem(item.decode(), float(score), voter.decode() or None,
                                SOURCES[int(source) - 1])
                     for item, score, source, voter in zip(flat, flat, flat, flat, strict=True)],
            by_source={name: _pairs(pairs) for name, pairs in zip(SOURCES, alone, strict=True)},
            titles=dict(zip(_text(titles[::2]), _text(titles[1::2]), strict=True)),
            by_weighting=[_text(ids) for ids in by_weighting],
        )

    async def blend_evidence(self) -> BlendEvidence:
        """The self-tuning blend's decayed counts of judged lists and of each one's hits."""
        counts = {field.decode(): float(value)
                  for field, value in (await self.redis.hgetall(self.keys.blend_evidence)).items()}
        return BlendEvidence(trials=counts.pop(BLEND_TRIALS_FIELD, 0.0), hits=counts)

    async def top_of_ranking(self, key: str, n: int, *, user_id: str | None,
                             exclude: Collection[str], scan_limit: int
                             ) -> list[tuple[str, float]]:
        """The ranking's best `n` (item, stored score) that may be shown: not unavailable,
        not seen by `user_id`, not in `exclude`; at most `scan_limit` entries read."""
        flat = await self._top_of_ranking(keys=[key], args=[self._script_config, orjson.dumps(
            {"user": user_id or "", "n": n, "scan_limit": scan_limit,
             "exclude": list(exclude)})])
        return [(item.decode(), float(score)) for item, score in zip(flat[::2], flat[1::2],
                                                                     strict=True)]

    async def shown_counts(self, user_id: str, items: Sequence[str]) -> dict[str, int]:
        """How often each of `items` was in the user's newest shown lists (impressions).
        Counted here, not in the scoring script: the lists hold up to 20 x 500 ids, which
        cost the scoring call some 3 ms of Redis, everyone's, to split, where a round trip
        costs this process under a tenth of a millisecond."""
        if not items:
            return {}
        wanted = set(items)
        shown = Counter(item for joined in await self.redis.lrange(self.keys.user_shown(user_id),
                                                                   0, -1)
                        for item in joined.decode().split(SHOWN_SEPARATOR) if item in wanted)
        return dict(shown)

    async def primary_categories(self, items: Sequence[str]) -> dict[str, str | None]:
        """Each item's first category, None when it has none (or is not in the catalogue)."""
        async with self.redis.pipeline(transaction=False) as pipe:
            for item in items:
                pipe.hget(self.keys.item_meta(item), "categories")
            joined = await pipe.execute()
        return {item: (j.decode().split(LIST_SEPARATOR)[0] or None) if j else None
                for item, j in zip(items, joined, strict=True)}

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

    async def erasure(self, erasure_id: str) -> dict[str, object] | None:
        """The audit entry of a finished erasure, None while it is pending."""
        found = await self.redis.hget(self.keys.erasures, erasure_id)
        return None if found is None else {"erasure_id": erasure_id, **orjson.loads(found)}

    async def erasures(self) -> list[dict[str, object]]:
        entries = await self.redis.hgetall(self.keys.erasures)
        return sorted(({"erasure_id": k.decode(), **orjson.loads(v)} for k, v in entries.items()),
                      key=lambda entry: entry["erased_at_ms"])

    async def learned_under_other_pseudonym_key(self, fingerprint: str) -> bool:
        """Whether the worker recorded another pseudonym key's fingerprint than `fingerprint`
        with the state's learning settings; read at most every `SETTINGS_REUSE_SECONDS`
        (every request for a user asks)."""
        async def read() -> bytes | None:
            return await self.redis.get(self.keys.learning_settings)

        return learned_under_another_key(await self._learning_settings.get(read), fingerprint)

    async def stalled_partitions(self) -> dict[str, str]:
        """Partitions the worker cannot apply now, and why."""
        stalled = await self.redis.hgetall(self.keys.stalled_partitions)
        return {source.decode(): reason.decode() for source, reason in stalled.items()}

    async def latest_dead_letters(self) -> list[dict[str, object]]:
        """The newest dead letters' summaries (when, kind, source position, reason)."""
        return [orjson.loads(entry)
                for entry in await self.redis.lrange(self.keys.dead_letters, 0, -1)]

    async def counters(self) -> dict[str, int]:
        counters = await self.redis.hgetall(self.keys.counters)
        return {name.decode(): int(value) for name, value in counters.items()}
