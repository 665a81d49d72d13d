"""Every tunable of the system, read from `STREAMREC_*` environment variables.

The worker, the service, the launcher and the tools all take one `Settings`
object; nothing reads the environment anywhere else.
"""

import functools
import json
from pathlib import Path
from typing import Annotated, Literal

from pydantic import (
    BeforeValidator,
    Field,
    NonNegativeFloat,
    NonNegativeInt,
    PositiveFloat,
    PositiveInt,
    SecretStr,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict

from .clock import clock_ms
from .decay import DECAY_HALF_LIVES_AHEAD, LATEST_MS, decay_horizon_ms, half_life_ms, utc_text
from .pseudonyms import key_fingerprint

#: Weightings the self-tuning blend judges at most, the configured one included.
MAX_BLEND_WEIGHTINGS = 10

DEFAULT_EVENT_WEIGHTS = {"view": 1.0, "click": 2.0, "add_to_cart": 4.0, "purchase": 8.0}
#: Weights compare event types; past this a weight times the decay at the horizon (2^200),
#: summed and raised to a similarity's powers, could overflow a double.
MAX_EVENT_WEIGHT = 1e6

Similarity = Literal["cosine", "jaccard", "count"]


def _neighbours_weigh_zero_in_a_pair(value: object) -> object:
    """A (co-occurrence, sequence) pair, as weightings were given before the neighbours
    source (settings, stored experiments' variants), weighs the neighbours 0."""
    if isinstance(value, (list, tuple)) and len(value) == 2:
        return (*value, 0.0)
    return value


#: A weighting the self-tuning blend judges: (co-occurrence, sequence, neighbours).
JudgedWeighting = Annotated[tuple[NonNegativeFloat, NonNegativeFloat, NonNegativeFloat],
                            BeforeValidator(_neighbours_weigh_zero_in_a_pair)]


class Settings(BaseSettings):
    # allow_inf_nan: an infinite or NaN number reaches the Lua scripts as null and stops one
    # midway, after some of its writes (Redis does not undo them)
    model_config = SettingsConfigDict(env_prefix="STREAMREC_", frozen=True, allow_inf_nan=False)

    # --- where the servers are -------------------------------------------------
    kafka_bootstrap_servers: str = Field(
        "localhost:9092", description="Comma-separated Kafka bootstrap servers."
    )
    redis_url: str = Field("redis://localhost:6379/0",
                           description="Redis (6.2 or later) or Valkey URL.")
    redis_timeout_seconds: PositiveFloat = Field(
        0.5, description="Socket timeout of the service's Redis calls; past it: HTTP 503."
    )
    key_prefix: str = Field("sr", description="Prefix of every Redis key the system owns.")

    # --- Kafka topics ----------------------------------------------------------
    events_topic: str = Field("streamrec-events", description="Interaction events, keyed by user.")
    items_topic: str = Field("streamrec-items", description="Catalogue events, keyed by item.")
    dead_letter_topic: str = Field(
        "streamrec-dead-letter", description="Rejected records: original bytes, reason in headers."
    )
    topic_partitions: PositiveInt = Field(8, description="Partitions of the events topic.")
    dead_letter_retention_days: PositiveInt = Field(
        7, description="The dead-letter topic keeps records (which may hold personal data) "
        "this long; set when the topic is created."
    )
    consumer_group: str = Field("streamrec-worker", description="Kafka consumer group of workers.")

    # --- worker batching -------------------------------------------------------
    batch_max_events: PositiveInt = Field(
        200, description="Events applied to Redis in one atomic script call."
    )
    max_commands_per_script: PositiveInt = Field(
        5000, description="A script call stops after the record that reaches this many Redis "
        "commands (the rest go in the next call), so no batch holds Redis for long."
    )
    batch_within_seconds: PositiveFloat = Field(
        0.02, description="Longest wait for a batch to fill before applying what is there."
    )
    max_event_bytes: PositiveInt = Field(
        65536, description="Larger records go to dead-letter unparsed."
    )
    max_future_seconds: PositiveFloat = Field(
        3600, description="Events stamped further in the future than this are rejected."
    )

    worker_metrics_port: int = Field(
        0, ge=0, le=65535, description="Port of the worker's Prometheus `/metrics` (0: not "
        "served; each worker needs its own port)."
    )
    worker_metrics_host: str = Field(
        "127.0.0.1", description="Address the worker's `/metrics` binds."
    )

    # --- the model -------------------------------------------------------------
    event_weights: dict[str, Annotated[float, Field(gt=0, le=MAX_EVENT_WEIGHT)]] = Field(
        default_factory=lambda: dict(DEFAULT_EVENT_WEIGHTS),
        description="Interaction types and their weights (JSON object; at most 1e6, so that "
        "decayed sums stay finite up to the decay horizon).",
    )
    affinity_half_life_days: PositiveFloat = Field(
        30, description="Half-life of user affinities (SAR's default)."
    )
    trending_half_life_days: PositiveFloat = Field(30, description="Half-life of trending scores.")
    decay_anchor_ms: int = Field(
        1_704_067_200_000, ge=0, le=LATEST_MS,
        description="Landmark of forward decay (2024-01-01; not in the future); interactions are "
        f"learned until {DECAY_HALF_LIVES_AHEAD} of the shortest half-life after it (2040 with "
        "the defaults). Moving it starts a new state.",
    )
    pair_window: PositiveInt = Field(
        20, description="A new item co-occurs with the user's last W distinct items."
    )
    session_gap_minutes: PositiveFloat = Field(
        30, le=7 * 24 * 60, description="A user's items form one session while each is at "
        "most this long after the one before (the usual web-analytics session)."
    )
    earlier_session_pair: float = Field(
        0.3, gt=0, le=1, description="What a new item's pair with an item of the user's "
        "earlier sessions (within the pair window) adds to c_ij; a pair within the session "
        "adds 1."
    )
    cooccurrence_half_life_days: PositiveFloat | None = Field(
        365, description="Half-life of co-occurrence and sequence counts and of n_i (old "
        "tastes fade); unset: counts never decay."
    )
    sequence_window: NonNegativeInt = Field(
        5, description="A new item is 'next' after each of the user's last S distinct items, "
        "weighted 1/distance (0: no sequence rules)."
    )
    shared_after_items: PositiveInt = Field(
        3, description="A new user's interactions shape only their own recommendations until "
        "they have touched this many distinct items; then all of them join the shared "
        "aggregates (co-occurrence, next rules, popularity, trending) at once. Fake users "
        "cost a request each: this makes each one build a history first."
    )
    shared_after_events: PositiveInt = Field(
        100, description="...or until they have made this many interactions (bounds the "
        "catch-up, which replays them)."
    )
    history_length: PositiveInt = Field(50, description="Recent distinct items kept per user.")
    affinity_items_kept: PositiveInt = Field(
        10_000, description="Items remembered per user (as seen, with affinities); past it the "
        "weakest are forgotten."
    )
    user_retention_days: PositiveInt | None = Field(
        None, description="Users inactive this long are erased exactly (the worker sweeps "
        "hourly; `streamrec sweep` at once); unset: kept until their state expires. Shorter "
        "than STREAMREC_USER_STATE_TTL_DAYS."
    )
    user_state_ttl_days: PositiveInt = Field(
        365, description="A user's own state (history, affinities, stated preferences) "
        "expires this long after their last event or statement."
    )
    cooccurrence_row_cap: PositiveInt = Field(
        500, description="Strongest co-occurring items kept per item."
    )
    neighbour_count: PositiveInt = Field(
        20, le=200, description="Neighbours who vote (the users sharing the most of the "
        "user's voting items, over the square root of how many items they know)."
    )
    neighbour_support: PositiveInt = Field(
        2, le=200, description="Neighbours who must have an item for it to be recommended "
        "through them (and share a voter for it to be named in its reason). At 1, one "
        "look-alike's recent items may be shown as they are; above neighbour_count, "
        "nothing is recommended through them."
    )
    item_users_kept: PositiveInt = Field(
        200, le=1000, description="Newest users kept per item, through whom the neighbours "
        "source finds a user's neighbours: all of them for the strongest voter, fewer in "
        "proportion to its vote for a weaker one."
    )
    similarity: Similarity = Field(
        "jaccard", description="jaccard c_ij/(n_i+n_j-c_ij), cosine c_ij/sqrt(n_i*n_j) (see "
        "STREAMREC_SIMILARITY_ALPHA) or count c_ij."
    )
    similarity_alpha: float = Field(
        0.5, ge=0, le=1, description="With cosine, its asymmetric form (Aiolli 2013): "
        "c_ij / (n_i^alpha * n_j^(1-alpha)), i the voting item; 0.5 is cosine, 1 the share of "
        "i's users who took j (favours popular candidates), 0 favours rare ones."
    )
    similarity_exponent: float = Field(
        1.0, gt=0, le=4, description="Locality exponent q (Aiolli 2013): a voter adds "
        "vote * s_ij^q to a candidate in a personalised list. Below 1 what many recent items "
        "agree on counts more than one strong pair, above 1 the strongest pairs count more; "
        "1 the similarity as is."
    )
    vote_items: PositiveInt = Field(20, description="Recent items that vote for candidates.")
    votes_by_event_type: bool = Field(
        False, description="A recent item's vote is also multiplied by the weight of its "
        "latest event type (STREAMREC_EVENT_WEIGHTS: a purchase 8 times a view); off, recency "
        "alone weighs votes, as in the streaming reference."
    )
    vote_position_decay: float = Field(
        0.9, gt=0, le=1, description="Weight of a vote per step of age (newest 1)."
    )
    earlier_session_vote: float = Field(
        0.3, ge=0, le=1, description="When a request continues the user's session (their "
        "newest item within STREAMREC_SESSION_GAP_MINUTES of it), the items of earlier "
        "sessions vote times this; a request that starts a session, or 1, votes by recency "
        "alone."
    )
    candidate_row_depth: PositiveInt = Field(
        100, description="Top co-occurring (and next) items read for the strongest voting "
        "item; weaker ones read in proportion to their vote."
    )
    sequence_votes: NonNegativeInt = Field(
        5, description="Most recent items whose 'next' rows vote for candidates."
    )
    sequence_vote_decay: float = Field(
        0.5, gt=0, le=1, description="Weight of a sequence vote per step of age (newest 1)."
    )
    cooccurrence_weight: float = Field(
        1.0, ge=0, description="Weight of the co-occurrence source in the blend; each source "
        "is first divided by its best score in the request."
    )
    sequence_weight: float = Field(
        1.0, ge=0, description="Weight of the sequence source in the blend."
    )
    neighbours_weight: NonNegativeFloat = Field(
        0.0, description="Weight of the neighbours source in the blend (users who share the "
        "user's voting items vote for theirs)."
    )
    blend_weightings: list[JudgedWeighting] = Field(
        [(1.0, 0.0, 0.0), (1.0, 0.5, 0.0), (1.0, 1.0, 0.0), (0.5, 1.0, 0.0), (0.0, 1.0, 0.0),
         (1.0, 0.5, 0.5), (1.0, 1.0, 0.5), (1.0, 0.5, 1.0), (1.0, 1.0, 1.0)],
        max_length=MAX_BLEND_WEIGHTINGS - 1,
        description="Self-tuning blend: (co-occurrence, sequence, neighbours) weightings "
        "(a pair weighs the neighbours 0) judged online "
        "beside the configured weights, on every personalised list: each one's top items "
        "ride along with the list's impression, and the user's next new item credits those "
        "that held it. The service serves the weighting with the most (decayed) hits "
        "(empty: always the configured weights, e.g. in an experiment's variant that "
        "compares weights)."
    )
    blend_evidence_horizon: PositiveInt = Field(
        5000, description="Judged lists the blend's hit counts remember: each judgement "
        "multiplies the earlier ones by 1 - 1/horizon (drift is followed at that pace)."
    )
    blend_trials_before_switch: PositiveInt = Field(
        200, description="Judged lists (decayed) before the service leaves the configured "
        "weights for a weighting that leads."
    )
    impressions_before_penalty: NonNegativeInt = Field(
        2, description="Times an item may be shown to a user who does not act on it before "
        "its personalised score is penalised."
    )
    impression_penalty: float = Field(
        0.8, gt=0, le=1, description="Score factor per showing beyond that (1: no penalty)."
    )
    max_per_category: PositiveInt | None = Field(
        None, description="Diversity: at most this many items of one (primary) category in a "
        "personalised list (unset: no cap); a request's max_per_category overrides it."
    )
    recommendation_ttl_seconds: PositiveInt = Field(
        7 * 86400, description="How long a served list is remembered: events on its items "
        "count for its recommender until then."
    )
    shown_lists_kept: PositiveInt = Field(
        20, description="Newest lists per user that the impression penalty counts."
    )
    shown_ttl_seconds: PositiveInt = Field(
        7 * 86400, description="A user's shown lists are forgotten this long after the last."
    )
    event_id_window_seconds: PositiveInt = Field(
        86400, description="An event id resent for the same user within this window is a "
        "duplicate and changes nothing."
    )
    event_ids_kept_per_user: PositiveInt = Field(
        10_000, description="Bound on the event ids remembered per user within the window."
    )

    # --- operating it ------------------------------------------------------------
    log_format: Literal["text", "json"] = Field(
        "text", description="'text': readable lines; 'json': one JSON object per line (time, "
        "level, logger, message, and request_id / recommendation_id where there is one)."
    )
    metrics: Literal["enabled", "disabled"] = Field(
        "enabled", description="'disabled': the service neither times requests nor counts "
        "lists, and /metrics answers 404 (the benchmark measures what metrics cost with it; "
        "the dashboard's serving figures need them)."
    )
    dashboard_sample_seconds: PositiveFloat = Field(
        5.0, description="How often the service keeps a snapshot of its and the worker's "
        "counters in Redis for the /dashboard page (one service process takes each)."
    )
    dashboard_samples_kept: PositiveInt = Field(
        720, description="Dashboard snapshots kept (720 at 5 s: the last hour; about 500 "
        "bytes each)."
    )

    # --- who may call the service ------------------------------------------------
    auth: Literal["required", "disabled"] = Field(
        "required", description="'required': every call but /healthz and /readyz needs an "
        "API key; 'disabled' (on purpose only): anyone may do anything."
    )
    api_keys_file: Path | None = Field(
        None, description="JSON file of API keys (names, scopes, SHA-256 only), written by "
        "`streamrec keys`; re-read when it changes."
    )
    id_hmac_key: SecretStr | None = Field(
        None, min_length=32, description="When set (32 characters or more, e.g. `openssl rand "
        "-hex 32`), user ids are replaced by a keyed HMAC-SHA256 of them "
        "wherever they enter (events, URLs), so nothing stores or logs a raw user id. A "
        "state is learned under one key: a worker with another applies nothing, a service "
        "with another is not ready and refuses every request naming a user (it would reach "
        "no one)."
    )
    rate_limit_per_second: PositiveFloat = Field(
        250.0, description="Units of work a second per API key on average, per service "
        "process: a light request is 1, a list 1 more per 50 items, a body 1 more per 64 KiB, "
        "a personalised list 7 and 1 more per 10 items (its scoring costs about that many "
        "light requests). A process does about 1,400 to 2,000 units a second, so one key cannot "
        "slow the others much (an app asking for 20 personalised lists and 30 other requests a "
        "second uses about 190); a key that needs more gets its own rate (`streamrec keys "
        "create --rate-limit`)."
    )
    rate_limit_burst: PositiveInt = Field(500, description="Units of work one key may burst.")
    over_limit_delay_seconds: NonNegativeFloat = Field(
        1.0, description="A caller refused (429: past its rate or its share of work in flight) "
        "again within this time gets that answer this long after asking (at most its "
        "Retry-After): a client that retries in a loop costs one answer per connection per "
        "delay, not thousands a second; a first refusal goes at once."
    )

    # --- HTTP service ----------------------------------------------------------
    http_host: str = Field("127.0.0.1", description="Address the HTTP service binds.")
    http_port: int = Field(8000, ge=0, le=65535, description="Port of the HTTP service.")
    http_processes: PositiveInt = Field(
        1, description="Service processes behind the one port; their Prometheus metrics are "
        "added up (in PROMETHEUS_MULTIPROC_DIR, or a temporary directory)."
    )
    max_request_bytes: PositiveInt = Field(1_048_576, description="Largest accepted request body.")
    max_events_per_request: PositiveInt = Field(1000, description="Events in one POST at most.")
    erasure_wait_seconds: NonNegativeFloat = Field(
        10.0, description="How long DELETE /v1/users/{id} waits for the worker to finish the "
        "erasure before answering 202 (pending)."
    )
    max_small_request_bytes: PositiveInt = Field(
        65_536, description="Largest body of the other endpoints (sessions, preferences)."
    )
    header_timeout_seconds: PositiveFloat = Field(
        10.0, description="A request's line and headers must arrive within this time of the "
        "connection (or of the previous response on it): else HTTP 408 and the connection "
        "closes."
    )
    body_timeout_seconds: PositiveFloat = Field(
        10.0, description="A request body must arrive whole within this time: else HTTP 408."
    )
    max_inflight_cost: PositiveInt = Field(
        32, description="Work in flight per service process, in light requests (the units of "
        "STREAMREC_RATE_LIMIT_PER_SECOND: 4 personalised lists of 10, 32 rankings); past it "
        "requests are refused at once: 503 overloaded."
    )
    max_inflight_cost_per_caller: PositiveInt = Field(
        16, description="Work in flight one API key (or, with auth disabled, one client "
        "address) may hold, in the same units, while other callers are there (holding work "
        "or asking within the last second); past it: 429, after waiting up to 100 ms for "
        "its own work to finish unless refused within the last second (a caller holding "
        "nothing may send one request that costs more). Half the process by default: a "
        "flooding key cannot hold it all (then others get only their fair part of it, the "
        "capacity over the callers with work in flight). A caller alone, as one app's "
        "backend key is when nothing else calls, may use the whole process."
    )
    cors_allowed_origins: list[str] = Field(
        default_factory=list, description="Origins a browser may call the API from (JSON "
        "list); empty: no cross-origin access."
    )

    @model_validator(mode="after")
    def _check_windows(self) -> "Settings":
        if {IMPRESSION, FORGET} & set(self.event_weights):
            raise ValueError("event_weights: 'impression' and 'forget' are reserved")
        if self.user_retention_days and self.user_retention_days >= self.user_state_ttl_days:
            raise ValueError("user_retention_days must be shorter than user_state_ttl_days: "
                             "a user's activity is read from state that expires then")
        if self.history_length < max(self.pair_window, self.vote_items, self.sequence_window,
                                     self.sequence_votes):
            raise ValueError("history_length must be >= pair_window, vote_items, "
                             "sequence_window and sequence_votes")
        if self.decay_anchor_ms > clock_ms() + self.max_future_seconds * 1000:
            raise ValueError(
                f"decay_anchor_ms {self.decay_anchor_ms} ({utc_text(self.decay_anchor_ms)}) is "
                "in the future: reading a decayed score would multiply it by 2 per half-life "
                "until then; set it to a time already past (about now for a new state)")
        return self

    def as_environment(self) -> dict[str, str]:
        """`STREAMREC_*` variables that give a child process these same settings (unset
        optional settings are left out: they are unset there too)."""
        values = self.model_dump(mode="json")
        if self.id_hmac_key is not None:  # dumped masked; the child needs the secret itself
            values["id_hmac_key"] = self.id_hmac_key.get_secret_value()
        return {
            f"STREAMREC_{name.upper()}": value if isinstance(value, str) else json.dumps(value)
            for name, value in values.items() if value is not None
        }

    @property
    def id_key(self) -> bytes | None:
        """The pseudonyms' HMAC key, as bytes; None when user ids are kept as given."""
        return None if self.id_hmac_key is None else self.id_hmac_key.get_secret_value().encode()

    @property
    def weightings(self) -> list[tuple[float, float, float]]:
        """The blend's (co-occurrence, sequence, neighbours) weightings judged online: the
        configured weights first (served until the evidence says otherwise), then
        `blend_weightings`."""
        configured = (self.cooccurrence_weight, self.sequence_weight, self.neighbours_weight)
        return list(dict.fromkeys([configured, *self.blend_weightings]))

    @property
    def learning_settings(self) -> dict[str, object]:
        """The settings that shape what an event adds to the shared state (see
        LEARNING_SETTINGS), by name."""
        return {name: getattr(self, name) for name in LEARNING_SETTINGS}

    @property
    def id_hmac_key_fingerprint(self) -> str:
        """Which `id_hmac_key` pseudonymises user ids, without the key (a learning setting:
        erasure finds a person by the pseudonym their events were learned under)."""
        return key_fingerprint(self.id_key)

    @property
    def decay_horizon(self) -> tuple[int, str]:
        """The last event time every decayed score can learn (the soonest of the half-lives'
        horizons: streamrec.contract.decay), and the half-life settings that set it."""
        return soonest_decay_horizon(self.decay_anchor_ms, (
            ("affinity_half_life_days", self.affinity_half_life_days),
            ("trending_half_life_days", self.trending_half_life_days),
            ("cooccurrence_half_life_days", self.cooccurrence_half_life_days)))

    @property
    def session_gap_ms(self) -> float:
        return self.session_gap_minutes * 60_000

    @property
    def vote_type_weights(self) -> dict[str, float]:
        """What a recent item's latest event type multiplies its vote by (unlisted: 1)."""
        return self.event_weights if self.votes_by_event_type else {}

    @property
    def event_types(self) -> frozenset[str]:
        """Accepted `event_type` values: the weighted interactions plus impressions."""
        return frozenset(self.event_weights) | {IMPRESSION}


@functools.lru_cache(maxsize=64)
def soonest_decay_horizon(anchor_ms: int, half_lives: tuple[tuple[str, float | None], ...]
                          ) -> tuple[int, str]:
    """Settings.decay_horizon, computed once per set of values (every event is checked)."""
    horizons = {name: decay_horizon_ms(anchor_ms, half_life_ms(days))
                for name, days in half_lives if days is not None}
    soonest = min(horizons.values())
    return soonest, " and ".join(name for name, at in horizons.items() if at == soonest)


#: The settings that shape what an event adds to the shared state. Erasure takes an event
#: back out with the settings in force, so a state is learned with one set of them throughout
#: (stream_app/lua/apply_batch.lua records them and refuses a writer with others). Not here:
#: the new-user rule (it decides when a user's events join, and erasure checks whether they
#: did) and what only a user's own state holds (erasure deletes it). The pseudonym key's
#: fingerprint is here too: erasure finds a person by the pseudonym their events carried.
LEARNING_SETTINGS = (
    "event_weights", "pair_window", "sequence_window", "session_gap_minutes",
    "earlier_session_pair", "cooccurrence_half_life_days", "trending_half_life_days",
    "decay_anchor_ms", "id_hmac_key_fingerprint",
)

IMPRESSION = "impression"
#: The event type of a request to erase a user (streamrec.contract.events.ForgetRequest).
FORGET = "forget"
