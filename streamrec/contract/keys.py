"""The Redis key layout: every key the system reads or writes is declared once, in
`KEY_LAYOUT`, and nowhere else.

From that one table come the Python accessors (`RedisKeys(prefix).user_recent(u)`,
`RedisKeys(prefix).popularity`), the templates the Lua scripts build keys from
(`RedisKeys.templates()`: a head and a tail around the id) and the table below, so a key
cannot exist on one side and be missing on the other (a unit test reads the Lua files and
checks every key they name is declared here).
"""

from dataclasses import dataclass
from importlib.resources import files
from typing import Any

#: Separator of categories and tags inside item:{i}:meta (Label forbids it in values).
LIST_SEPARATOR = "|"
#: Separator of the item ids of one shown list in user:{u}:shown (ids have no control
#: characters; apply_batch.lua's UNIT).
SHOWN_SEPARATOR = "\x1f"
#: The field of recommendation:{id} naming the recommender (the item fields are bare ids;
#: counted events are SHOWN_SEPARATOR + type + SHOWN_SEPARATOR + item).
RECOMMENDER_FIELD = SHOWN_SEPARATOR + "recommender"
#: The field of recommendation:{id} holding, for a list served in an experiment, the JSON
#: [experiment, variant ('' when interleaved), the user's unit, [the interleaved variants]].
EXPERIMENT_FIELD = SHOWN_SEPARATOR + "experiment"
#: The field of recommendation:{id} naming the user the list was served to: only that user's
#: events count as feedback on it.
OWNER_FIELD = SHOWN_SEPARATOR + "user"
#: The field of blend_evidence counting the judged lists (the others are weightings' labels).
BLEND_TRIALS_FIELD = SHOWN_SEPARATOR + "trials"
#: The field of user:{u}:item_types present once u's interactions are in the shared
#: aggregates (the new-user rule).
SHARED_FIELD = SHOWN_SEPARATOR + "shared"
#: The slot of the id in a per-id key's pattern.
ID_SLOT = "{}"


@dataclass(frozen=True, slots=True)
class KeySpec:
    name: str  # the accessor's and the Lua template's name
    pattern: str  # with ID_SLOT for one key per user, item, category, ...
    redis_type: str
    holds: str

    @property
    def per_id(self) -> bool:
        return ID_SLOT in self.pattern


KEY_LAYOUT: tuple[KeySpec, ...] = (
    KeySpec("user_recent", "user:{}:recent", "zset",
            "item -> epoch ms of u's latest event on it (newest `history_length`)"),
    KeySpec("user_recent_types", "user:{}:recent_types", "hash",
            "item -> event type of that latest interaction"),
    KeySpec("user_affinity", "user:{}:affinity", "zset",
            "item -> forward-decayed sum of u's event weights; all u touched"),
    KeySpec("user_item_types", "user:{}:item_types", "hash",
            "item -> the event types u gave it (\\x1f-wrapped; each moves popularity once); "
            "\\x1fshared -> 1 once u's interactions are in the shared aggregates"),
    KeySpec("user_category_affinity", "user:{}:category_affinity", "zset",
            "category -> forward-decayed sum of weights"),
    KeySpec("user_shown", "user:{}:shown", "list",
            "u's newest served lists (item ids joined by \\x1f), capped, expiring"),
    KeySpec("user_weighting_lists", "user:{}:weighting_lists", "hash",
            "blend weighting (label) -> the top items it would have served u in u's newest "
            "list (\\x1f-joined), until u's next new item judges them (expiring)"),
    KeySpec("user_event_ids", "user:{}:event_ids", "zset",
            "event id -> applied at (ms): u's events applied within the dedup window"),
    KeySpec("user_preferences", "user:{}:preferences", "set",
            "categories u said they like (the service writes it: stated)"),
    KeySpec("user_watermark", "user:{}:watermark", "hash",
            "event_time_ms, applied_at_ms of u's newest applied event"),
    KeySpec("user_contributions", "user:{}:contributions", "list",
            "u's applied interactions in order (JSON [item, type, ts]) and the ids of lists "
            "served to u ([id]): what erasure takes back out"),
    KeySpec("erasure", "erasure:{}", "hash",
            "done -> contributions of u already taken out by an erasure in progress"),
    KeySpec("item_cooccurrence", "item:{}:cooccurrence", "zset",
            "j -> c_ij, users who touched i and j close together (capped; a pair across "
            "sessions counts earlier_session_pair)"),
    KeySpec("item_next", "item:{}:next", "zset",
            "j -> sum of 1/d over users who went on to j d steps after i (capped)"),
    KeySpec("item_users", "item:{}:users", "zset",
            "u -> epoch ms of u's first interaction with i, for the newest `item_users_kept` "
            "users whose interactions are shared: whom the neighbours source finds through i"),
    KeySpec("item_meta", "item:{}:meta", "hash",
            "title, categories and tags ('|'-joined), available (1/0)"),
    KeySpec("item_user_counts", "item_user_counts", "hash",
            "i -> n_i, distinct users who touched i"),
    KeySpec("popularity", "popularity", "zset", "item -> all-time weight sum"),
    KeySpec("trending", "trending", "zset", "item -> forward-decayed weight sum"),
    KeySpec("category_popularity", "category:{}:popularity", "zset",
            "popularity, for category c's members"),
    KeySpec("category_trending", "category:{}:trending", "zset",
            "trending, for category c's members"),
    KeySpec("category_items", "category:{}:items", "set", "catalogue items in category c"),
    KeySpec("unavailable_items", "unavailable_items", "set",
            "items that must never be recommended"),
    KeySpec("recommender_metrics", "recommender:{}:metrics", "hash",
            "event type -> count, for lists served by recommender r"),
    KeySpec("recommenders", "recommenders", "set", "names of recommenders that served lists"),
    KeySpec("recommendation", "recommendation:{}", "hash",
            "served list id: \\x1frecommender -> name, its items -> '' (interleaved: the "
            "variant that placed it), \\x1fexperiment -> JSON (in an experiment), one field per "
            "(event type, item) already counted, \\x1f\\x1f variant -> clicks on its items "
            "(interleaved) (expires)"),
    KeySpec("experiments", "experiments", "hash",
            "experiment name -> its definition (JSON: variants, mode, times, stopped_at)"),
    KeySpec("experiment_metrics", "experiment:{}:metrics", "hash",
            "variant \\x1f count -> value: users, lists, items_shown, per event type the "
            "events attributed, converted_users, preferred_lists (interleaving) and the sums "
            "the per-user statistics need (items_shown_squares, click_squares, "
            "clicks_by_items_shown)"),
    KeySpec("experiment_users", "experiment:{}:users", "hash",
            "unit (SHA-1 of the user id) -> variant; unit \\x1f count -> that user's "
            "items_shown, click, purchase"),
    KeySpec("blend_evidence", "blend_evidence", "hash",
            "blend weighting (label) -> decayed hits of its judged lists; \\x1ftrials -> "
            "decayed count of judged lists"),
    KeySpec("applied_offsets", "applied_offsets", "hash",
            "\"topic:partition\" -> highest offset applied (the exactly-once guard)"),
    KeySpec("log_epochs", "log_epochs", "hash",
            "\"topic:partition\" -> id of the log the guard's offsets belong to"),
    KeySpec("erased_users", "erased_users", "hash",
            "user -> time (ms) of their erasure: their events stamped before it are dropped"),
    KeySpec("erasures", "erasures", "hash",
            "erasure id -> audit JSON: pseudonym, requested and erased at, what was removed"),
    KeySpec("stalled_partitions", "stalled_partitions", "hash",
            "\"topic:partition\" -> why the worker cannot apply it now (empty: all flowing)"),
    KeySpec("watermark", "watermark", "hash",
            "event_time_ms, applied_at_ms of the newest applied batch"),
    KeySpec("dead_letters", "dead_letters", "list",
            "newest first, JSON of the latest dead-lettered records: when, kind, source "
            "position, reason (capped, expires with the dead-letter topic's retention)"),
    KeySpec("dashboard_samples", "dashboard_samples", "list",
            "newest first, JSON snapshots of the counters /dashboard charts (capped)"),
    KeySpec("dashboard_sampler", "dashboard_sampler", "string",
            "held for one sampling interval by the service process that took the last "
            "dashboard sample"),
    KeySpec("attribution_secret", "attribution_secret", "string",
            "the secret the service signs impressions' attribution with, made once by the "
            "first process that needs it (streamrec.contract.attribution)"),
    KeySpec("learning_settings", "learning_settings", "string",
            "JSON of the settings the shared state was learned with (LEARNING_SETTINGS), "
            "recorded by the first batch: a writer with others is refused"),
    KeySpec("counters", "counters", "hash",
            "events_applied, dead_lettered, items_applied, duplicates_skipped (redelivered), "
            "duplicate_events (event id resent), users_erased, erased_events_dropped"),
)


def layout_table() -> str:
    """KEY_LAYOUT as a Markdown table (this module's docstring ends with it)."""
    rows = [f"| {spec.pattern.replace(ID_SLOT, '{id}')} | {spec.redis_type} | {spec.holds} |"
            for spec in KEY_LAYOUT]
    return "\n".join(["| key | type | holds |", "|---|---|---|", *rows])


__doc__ = f"{__doc__}\n{layout_table()}\n"


@dataclass(frozen=True)
class RedisKeys:
    """Key names under one prefix: a method per per-id key, a property per fixed key, one
    of each for every entry of KEY_LAYOUT (generated below)."""

    prefix: str

    def templates(self) -> dict[str, list[str] | str]:
        """Key names for the Lua scripts: per-id keys as [head, tail], fixed keys as strings."""
        return {
            spec.name: [f"{self.prefix}:{head}", tail]
            if spec.per_id else f"{self.prefix}:{spec.pattern}"
            for spec in KEY_LAYOUT
            for head, _, tail in [spec.pattern.partition(ID_SLOT)]
        }


#: The prelude of every Lua script: decodes the config (ARGV[1]) and defines K and key().
KEYS_LUA = files("streamrec.contract").joinpath("lua/keys.lua").read_text()


def lua_script(*parts: str) -> str:
    """One script from the keys prelude and `parts` (Lua sources, in order)."""
    return "\n".join([KEYS_LUA, *parts])


def _accessor(spec: KeySpec) -> Any:
    if spec.per_id:
        def per_id(self: RedisKeys, ident: str) -> str:
            return f"{self.prefix}:{spec.pattern.replace(ID_SLOT, ident)}"

        per_id.__name__ = spec.name
        per_id.__doc__ = spec.holds
        return per_id
    return property(lambda self: f"{self.prefix}:{spec.pattern}", doc=spec.holds)


for _spec in KEY_LAYOUT:
    setattr(RedisKeys, _spec.name, _accessor(_spec))
