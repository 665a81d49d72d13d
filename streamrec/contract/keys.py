"""The Redis key layout: every key the system reads or writes is named here and nowhere else.

The worker's Lua scripts build per-user and per-item keys inside Redis; they receive the
templates from `RedisKeys.templates()` (a head and a tail around the id), so this file stays
the only place a key is spelled.

| key | type | holds |
|---|---|---|
| user:{u}:recent | zset | item -> epoch ms of u's latest event on it (newest `history_length`) |
| user:{u}:recent_types | hash | item -> event type of that latest interaction |
| user:{u}:affinity | zset | item -> forward-decayed sum of u's event weights; all u touched |
| user:{u}:category_affinity | zset | category -> forward-decayed sum of weights |
| user:{u}:shown | hash | item -> times u was shown it in a served list |
| user:{u}:preferences | set | categories u said they like (the service writes it: stated) |
| user:{u}:watermark | hash | event_time_ms, applied_at_ms of u's newest applied event |
| item:{i}:cooccurrence | zset | j -> c_ij, users who touched i and j close together (capped) |
| item:{i}:meta | hash | title, categories and tags ('|'-joined), available (1/0) |
| item:{i}:next | zset | j -> sum of 1/d over users who went on to j d steps after i (capped) |
| item_user_counts | hash | i -> n_i, distinct users who touched i |
| users | set | every user with an interaction: N = SCARD |
| popularity, trending | zset | item -> all-time weight sum, forward-decayed weight sum |
| category:{c}:popularity, :trending | zset | the same scores, for category c's members |
| category:{c}:items | set | catalogue items in category c |
| unavailable_items | set | items that must never be recommended |
| item_feedback:{type} | hash | item -> events of that type carrying a recommendation id |
| recommender:{r}:metrics | hash | event type -> count, for lists served by recommender r |
| recommenders | set | names of recommenders that served lists |
| recommendation:{id} | string | the recommender that served list id (expires) |
| applied_offsets | hash | "topic:partition" -> highest offset applied (the exactly-once guard) |
| watermark | hash | event_time_ms, applied_at_ms of the newest applied batch |
| counters | hash | events_applied, dead_lettered, items_applied, duplicates_skipped |
"""

from dataclasses import dataclass

USER_RECENT = "user:{}:recent"
USER_RECENT_TYPES = "user:{}:recent_types"
USER_AFFINITY = "user:{}:affinity"
USER_CATEGORY_AFFINITY = "user:{}:category_affinity"
USER_SHOWN = "user:{}:shown"
USER_PREFERENCES = "user:{}:preferences"
USER_WATERMARK = "user:{}:watermark"
ITEM_COOCCURRENCE = "item:{}:cooccurrence"
ITEM_NEXT = "item:{}:next"
ITEM_META = "item:{}:meta"
CATEGORY_POPULARITY = "category:{}:popularity"
CATEGORY_TRENDING = "category:{}:trending"
CATEGORY_ITEMS = "category:{}:items"
ITEM_FEEDBACK = "item_feedback:{}"
RECOMMENDER_METRICS = "recommender:{}:metrics"
RECOMMENDATION = "recommendation:{}"

#: Separator of categories and tags inside item:{i}:meta (Label forbids it in values).
LIST_SEPARATOR = "|"


@dataclass(frozen=True)
class RedisKeys:
    prefix: str

    def _key(self, template: str, ident: str) -> str:
        return f"{self.prefix}:{template.format(ident)}"

    def _fixed(self, name: str) -> str:
        return f"{self.prefix}:{name}"

    def user_recent(self, user_id: str) -> str:
        return self._key(USER_RECENT, user_id)

    def user_recent_types(self, user_id: str) -> str:
        return self._key(USER_RECENT_TYPES, user_id)

    def user_affinity(self, user_id: str) -> str:
        return self._key(USER_AFFINITY, user_id)

    def user_category_affinity(self, user_id: str) -> str:
        return self._key(USER_CATEGORY_AFFINITY, user_id)

    def user_shown(self, user_id: str) -> str:
        return self._key(USER_SHOWN, user_id)

    def user_preferences(self, user_id: str) -> str:
        return self._key(USER_PREFERENCES, user_id)

    def user_watermark(self, user_id: str) -> str:
        return self._key(USER_WATERMARK, user_id)

    def item_cooccurrence(self, item_id: str) -> str:
        return self._key(ITEM_COOCCURRENCE, item_id)

    def item_next(self, item_id: str) -> str:
        return self._key(ITEM_NEXT, item_id)

    def item_meta(self, item_id: str) -> str:
        return self._key(ITEM_META, item_id)

    def category_popularity(self, category: str) -> str:
        return self._key(CATEGORY_POPULARITY, category)

    def category_trending(self, category: str) -> str:
        return self._key(CATEGORY_TRENDING, category)

    def category_items(self, category: str) -> str:
        return self._key(CATEGORY_ITEMS, category)

    def item_feedback(self, event_type: str) -> str:
        return self._key(ITEM_FEEDBACK, event_type)

    def recommender_metrics(self, recommender: str) -> str:
        return self._key(RECOMMENDER_METRICS, recommender)

    def recommendation(self, recommendation_id: str) -> str:
        return self._key(RECOMMENDATION, recommendation_id)

    @property
    def item_user_counts(self) -> str:
        return self._fixed("item_user_counts")

    @property
    def users(self) -> str:
        return self._fixed("users")

    @property
    def popularity(self) -> str:
        return self._fixed("popularity")

    @property
    def trending(self) -> str:
        return self._fixed("trending")

    @property
    def unavailable_items(self) -> str:
        return self._fixed("unavailable_items")

    @property
    def recommenders(self) -> str:
        return self._fixed("recommenders")

    @property
    def applied_offsets(self) -> str:
        return self._fixed("applied_offsets")

    @property
    def watermark(self) -> str:
        return self._fixed("watermark")

    @property
    def counters(self) -> str:
        return self._fixed("counters")

    def templates(self) -> dict[str, list[str] | str]:
        """Key names for the Lua scripts: per-id keys as [head, tail], fixed keys as strings."""
        per_id = {
            "user_recent": USER_RECENT,
            "user_recent_types": USER_RECENT_TYPES,
            "user_affinity": USER_AFFINITY,
            "user_category_affinity": USER_CATEGORY_AFFINITY,
            "user_shown": USER_SHOWN,
            "user_preferences": USER_PREFERENCES,
            "user_watermark": USER_WATERMARK,
            "item_cooccurrence": ITEM_COOCCURRENCE,
            "item_next": ITEM_NEXT,
            "item_meta": ITEM_META,
            "category_popularity": CATEGORY_POPULARITY,
            "category_trending": CATEGORY_TRENDING,
            "category_items": CATEGORY_ITEMS,
            "item_feedback": ITEM_FEEDBACK,
            "recommender_metrics": RECOMMENDER_METRICS,
            "recommendation": RECOMMENDATION,
        }
        templates: dict[str, list[str] | str] = {
            name: [f"{self.prefix}:{head}", tail]
            for name, (head, tail) in ((n, t.split("{}")) for n, t in per_id.items())
        }
        for name in (
            "item_user_counts", "users", "popularity", "trending", "unavailable_items",
            "recommenders", "applied_offsets", "watermark", "counters",
        ):
            templates[name] = self._fixed(name)
        return templates
