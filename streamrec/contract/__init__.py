"""The contract between the write path (`stream_app`) and the read path (`serving`).

Event schemas, the Redis key layout, the decay arithmetic both sides rely on, settings, and
the topics both produce to and consume from.
"""

from .api_keys import ApiKey, ApiKeys, Scope, create_key, key_digest, load_keys, revoke_key
from .attribution import AttributionSecret, check_attribution, signed
from .decay import DAY_MS, forward_decayed, half_life_ms, value_at
from .events import (
    DEFAULT_LIST_LENGTH,
    MAX_LIST_LENGTH,
    UNATTRIBUTED,
    ForgetRequest,
    Identifier,
    ImpressionEvent,
    InteractionEvent,
    InvalidRecord,
    ItemEvent,
    Label,
    Recommender,
    describe_validation_error,
    forget_request,
    parse_event,
    parse_item,
    pseudonym,
    validation_context,
)
from .experiments import (
    RECOMMENDATION_SETTINGS,
    Experiment,
    ExperimentRecord,
    ServedExperiment,
    Variant,
    VariantSettings,
    assign,
    stored,
    with_overrides,
)
from .keys import (
    BLEND_TRIALS_FIELD,
    EXPERIMENT_FIELD,
    LIST_SEPARATOR,
    OWNER_FIELD,
    RECOMMENDER_FIELD,
    SHARED_FIELD,
    SHOWN_SEPARATOR,
    RedisKeys,
    lua_script,
)
from .logs import JsonLogFormatter, json_logging_config
from .progress import partition_ends, records_behind
from .pseudonyms import OTHER_PSEUDONYM_KEY, learned_under_another_key, pseudonymise
from .reuse import Reused
from .settings import FORGET, IMPRESSION, Settings, Similarity
from .topics import LOG_ID_HEADER, ensure_topics, produce_records

__all__ = [
    "BLEND_TRIALS_FIELD",
    "DAY_MS",
    "DEFAULT_LIST_LENGTH",
    "EXPERIMENT_FIELD",
    "FORGET",
    "IMPRESSION",
    "LIST_SEPARATOR",
    "LOG_ID_HEADER",
    "MAX_LIST_LENGTH",
    "OTHER_PSEUDONYM_KEY",
    "OWNER_FIELD",
    "RECOMMENDATION_SETTINGS",
    "RECOMMENDER_FIELD",
    "SHARED_FIELD",
    "SHOWN_SEPARATOR",
    "UNATTRIBUTED",
    "ApiKey",
    "ApiKeys",
    "AttributionSecret",
    "Experiment",
    "ExperimentRecord",
    "ForgetRequest",
    "Identifier",
    "ImpressionEvent",
    "InteractionEvent",
    "InvalidRecord",
    "ItemEvent",
    "JsonLogFormatter",
    "Label",
    "Recommender",
    "RedisKeys",
    "Reused",
    "Scope",
    "ServedExperiment",
    "Settings",
    "Similarity",
    "Variant",
    "VariantSettings",
    "assign",
    "check_attribution",
    "create_key",
    "describe_validation_error",
    "ensure_topics",
    "forget_request",
    "forward_decayed",
    "half_life_ms",
    "json_logging_config",
    "key_digest",
    "learned_under_another_key",
    "load_keys",
    "lua_script",
    "parse_event",
    "parse_item",
    "partition_ends",
    "produce_records",
    "pseudonym",
    "pseudonymise",
    "records_behind",
    "revoke_key",
    "signed",
    "stored",
    "validation_context",
    "value_at",
    "with_overrides",
]
