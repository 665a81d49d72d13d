"""Applies batches of validated records to Redis in one atomic server-side script call.

Knows nothing about Faust: the worker, the evaluator and the tests all call `apply`.
"""

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from importlib.resources import files

import orjson
from redis.asyncio import Redis
from redis.exceptions import ResponseError

from streamrec.contract import (
    BLEND_TRIALS_FIELD,
    EXPERIMENT_FIELD,
    LIST_SEPARATOR,
    OWNER_FIELD,
    RECOMMENDER_FIELD,
    SHARED_FIELD,
    SHOWN_SEPARATOR,
    UNATTRIBUTED,
    ForgetRequest,
    ImpressionEvent,
    InteractionEvent,
    ItemEvent,
    RedisKeys,
    Settings,
    half_life_ms,
    lua_script,
)
from streamrec.contract.clock import clock_ms

LUA = files("stream_app").joinpath("lua")
APPLY_BATCH_LUA = lua_script(*(LUA.joinpath(name).read_text()
                               for name in ("forward_decay.lua", "apply_batch.lua")))


@dataclass(frozen=True, slots=True)
class LogEpoch:
    """The first record of a partition's log (see `streamrec.contract.topics`)."""

    log_id: str


@dataclass(frozen=True, slots=True)
class StreamRecord:
    """A record at its stream position; `payload` is None when it went to dead-letter."""

    source: str  # "topic:partition"
    offset: int
    payload: InteractionEvent | ImpressionEvent | ForgetRequest | ItemEvent | LogEpoch | None


@dataclass(frozen=True, slots=True)
class BatchResult:
    applied: int
    duplicates_skipped: int
    dead_lettered: int
    duplicate_events: int = 0
    #: `applied` by event type (interaction types and "impression").
    applied_by_type: dict[str, int] = field(default_factory=dict)


POSITION = ("source", "offset")
#: What apply_batch.lua receives per record kind: an array, the kind first, then these fields
#: in this order (the script names them from this table, sent in its config).
RECORD_FIELDS: dict[str, tuple[str, ...]] = {
    "interaction": (*POSITION, "event_id", "user_id", "item_id", "event_type", "timestamp",
                    "recommendation_id"),
    "impression": (*POSITION, "event_id", "user_id", "item_ids", "timestamp",
                   "recommendation_id", "recommender", "experiment", "variant", "item_variants",
                   "weighting_lists"),
    "forget": (*POSITION, "event_id", "user_id", "timestamp", "pseudonym"),
    "item": (*POSITION, "item_id", "categories", "tags", "available", "title"),
    "epoch": (*POSITION, "log_id"),
    "rejected": POSITION,
}


def _kind(payload: object) -> str:
    if payload is None:
        return "rejected"
    if isinstance(payload, LogEpoch):
        return "epoch"
    if isinstance(payload, ItemEvent):
        return "item"
    if isinstance(payload, ImpressionEvent):
        return "impression"
    if isinstance(payload, ForgetRequest):
        return "forget"
    return "interaction"


def _encode(record: StreamRecord) -> list[object]:
    kind = _kind(record.payload)
    values = []
    for name in RECORD_FIELDS[kind]:
        value = getattr(record, name) if name in POSITION else getattr(record.payload, name)
        values.append("" if value is None else value)  # cjson has no None
    return [kind, *values]


#: Latest dead letters kept in Redis for the dashboard (the topic itself keeps them all).
DEAD_LETTERS_KEPT = 20
#: Learning settings a refusal names without their values: it reaches /readyz, which anyone
#: may read, and a fingerprint there would let them test guesses of the pseudonym key.
UNSHOWN_SETTINGS = frozenset({"id_hmac_key_fingerprint"})
#: How apply_batch.lua's refusal of other learning settings begins.
LEARNING_SETTINGS_CHANGED = "LEARNING_SETTINGS_CHANGED "


class LearningSettingsChanged(RuntimeError):
    """The state was learned with other learning settings: applying more with these would
    make erasure inexact, so nothing is applied."""

    def __init__(self, differing: list[str], recorded: dict[str, object],
                 current: dict[str, object], key: str) -> None:
        super().__init__(
            "the state was learned with other learning settings, and erasure takes an event "
            "back out with the settings in force, so nothing is applied: go back to those "
            "settings, start a new state (another key prefix or Redis), or delete "
            f"{key} to accept that erasing users learned before is no longer exact ("
            + ", ".join(f"{name}: learned with {recorded[name]!r}, now {current[name]!r}"
                        if name not in UNSHOWN_SETTINGS else f"{name}: another one"
                        for name in differing) + ")")


class StateWriter:
    def __init__(self, redis: Redis, settings: Settings) -> None:
        self._redis = redis
        self._keys = RedisKeys(settings.key_prefix)
        self._dead_letters_ttl_seconds = settings.dead_letter_retention_days * 86400
        self._script = redis.register_script(APPLY_BATCH_LUA)
        self._config = {
            "keys": self._keys.templates(),
            "list_separator": LIST_SEPARATOR,
            "shown_separator": SHOWN_SEPARATOR,
            "recommender_field": RECOMMENDER_FIELD,
            "experiment_field": EXPERIMENT_FIELD,
            "owner_field": OWNER_FIELD,
            "unattributed": UNATTRIBUTED,
            "event_weights": settings.event_weights,
            "learning_settings": orjson.dumps(settings.learning_settings,
                                              option=orjson.OPT_SORT_KEYS).decode(),
            "pair_window": settings.pair_window,
            "session_gap_ms": settings.session_gap_ms,
            "earlier_session_pair": settings.earlier_session_pair,
            "history_length": settings.history_length,
            "cooccurrence_row_cap": settings.cooccurrence_row_cap,
            "item_users_kept": settings.item_users_kept,
            "sequence_window": settings.sequence_window,
            # cjson has no None: 0 means counts never decay.
            "cooccurrence_half_life_ms": half_life_ms(settings.cooccurrence_half_life_days)
            if settings.cooccurrence_half_life_days else 0,
            "affinity_half_life_ms": half_life_ms(settings.affinity_half_life_days),
            "trending_half_life_ms": half_life_ms(settings.trending_half_life_days),
            "decay_anchor_ms": settings.decay_anchor_ms,
            "recommendation_ttl_seconds": settings.recommendation_ttl_seconds,
            "shown_lists_kept": settings.shown_lists_kept,
            "shown_ttl_seconds": settings.shown_ttl_seconds,
            "blend_evidence_horizon": settings.blend_evidence_horizon,
            "blend_trials_field": BLEND_TRIALS_FIELD,
            "shared_field": SHARED_FIELD,
            "event_id_window_ms": settings.event_id_window_seconds * 1000,
            "event_ids_kept": settings.event_ids_kept_per_user,
            "record_fields": RECORD_FIELDS,
            "max_commands": settings.max_commands_per_script,
            "affinity_items_kept": settings.affinity_items_kept,
            "shared_after_items": settings.shared_after_items,
            "shared_after_events": settings.shared_after_events,
            "user_state_ttl_seconds": settings.user_state_ttl_days * 86400,
        }

    async def apply(
        self, records: Sequence[StreamRecord], applied_at_ms: int | None = None
    ) -> BatchResult:
        """Apply `records` (in stream order) exactly once; redelivered positions are skipped.
        Takes as many script calls as the command budget needs: each is atomic and moves the
        guard, so a crash between two calls redelivers only what the later ones held."""
        totals = [0, 0, 0, 0]
        by_type: Counter[str] = Counter()
        config = orjson.dumps(dict(self._config,
                                   applied_at_ms=clock_ms(applied_at_ms)))
        remaining = [_encode(r) for r in records]
        while remaining:
            try:
                *counts, taken, type_counts = await self._script(
                    args=[config, orjson.dumps(remaining)])
            except ResponseError as error:
                if str(error).startswith(LEARNING_SETTINGS_CHANGED):
                    raise self._learning_settings_changed(str(error)) from None
                raise
            totals = [total + int(count) for total, count in zip(totals, counts, strict=True)]
            by_type.update({event_type.decode(): int(count) for event_type, count
                            in zip(type_counts[::2], type_counts[1::2], strict=True)})
            remaining = remaining[int(taken):]
        return BatchResult(*totals, applied_by_type=dict(by_type))

    def _learning_settings_changed(self, message: str) -> LearningSettingsChanged:
        """From the script's refusal: the differing names (as the script compared them),
        then the record."""
        differing, recorded = message.removeprefix(LEARNING_SETTINGS_CHANGED).split(" ", 1)
        return LearningSettingsChanged(
            orjson.loads(differing), orjson.loads(recorded),
            orjson.loads(self._config["learning_settings"]), self._keys.learning_settings)

    async def record_stall(self, sources: Iterable[str], reason: str) -> None:
        """Say (for /readyz) that these partitions cannot be applied now, and why."""
        await self._redis.hset(self._keys.stalled_partitions,
                               mapping=dict.fromkeys(sources, reason[:1000]))

    async def remember_dead_letters(self, summaries: Sequence[dict[str, object]]) -> None:
        """Keep the newest `DEAD_LETTERS_KEPT` summaries (in stream order: the last ends up
        first) for the dashboard; they may name users, so they expire like the topic's."""
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.lpush(self._keys.dead_letters, *(orjson.dumps(s) for s in summaries))
            pipe.ltrim(self._keys.dead_letters, 0, DEAD_LETTERS_KEPT - 1)
            pipe.expire(self._keys.dead_letters, self._dead_letters_ttl_seconds)
            await pipe.execute()

    async def highest_applied(self, sources: Iterable[str]) -> dict[str, int]:
        """The exactly-once guard's position per source: records at or below it are done."""
        wanted = list(sources)
        stored = await self._redis.hmget(self._keys.applied_offsets, wanted)
        return {source: int(o) for source, o in zip(wanted, stored, strict=True) if o is not None}
