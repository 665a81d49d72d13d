"""The contract between the write path (`stream_app`) and the read path (`serving`).

Event schemas, the Redis key layout, the decay arithmetic both sides rely on, settings, and
the topics both produce to and consume from.
"""

from .decay import DAY_MS, forward_decayed, half_life_ms, value_at
from .events import (
    MAX_LIST_LENGTH,
    Identifier,
    ImpressionEvent,
    InteractionEvent,
    InvalidRecord,
    ItemEvent,
    Label,
    Recommender,
    describe_validation_error,
    parse_event,
    parse_item,
    validation_context,
)
from .keys import LIST_SEPARATOR, SHOWN_SEPARATOR, RedisKeys, lua_script
from .settings import IMPRESSION, Settings, Similarity
from .topics import LOG_ID_HEADER, ensure_topics, produce_records

__all__ = [
    "DAY_MS",
    "IMPRESSION",
    "LIST_SEPARATOR",
    "LOG_ID_HEADER",
    "MAX_LIST_LENGTH",
    "SHOWN_SEPARATOR",
    "Identifier",
    "ImpressionEvent",
    "InteractionEvent",
    "InvalidRecord",
    "ItemEvent",
    "Label",
    "Recommender",
    "RedisKeys",
    "Settings",
    "Similarity",
    "describe_validation_error",
    "ensure_topics",
    "forward_decayed",
    "half_life_ms",
    "lua_script",
    "parse_event",
    "parse_item",
    "produce_records",
    "validation_context",
    "value_at",
]
