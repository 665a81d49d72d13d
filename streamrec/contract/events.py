"""What producers may put on the topics, and the one validator both the worker and the HTTP
service apply to it, so a record rejected by one is rejected by the other with the same reason.
"""

import math
import time
from datetime import datetime
from typing import Annotated, Any, TypeVar

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    ValidationInfo,
    field_validator,
)

from .settings import Settings

#: Ids become parts of Redis keys and log lines: printable, bounded, no surrounding blanks.
Identifier = Annotated[
    str,
    StringConstraints(min_length=1, max_length=256, pattern=r"^[^\x00-\x1f\x7f]+$"),
]
#: Categories and tags: like ids, and without '|', their separator in Redis.
Label = Annotated[
    str,
    StringConstraints(min_length=1, max_length=128, pattern=r"^[^\x00-\x1f\x7f|]+$"),
]
PropertyValue = Annotated[str, StringConstraints(max_length=1024)] | int | float | bool | None

#: Epoch milliseconds below this are almost surely epoch seconds sent by mistake (it is 1973).
SMALLEST_PLAUSIBLE_EPOCH_MS = 100_000_000_000


class InteractionEvent(BaseModel):
    """A user did something with an item, or was shown it (`impression`)."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    event_id: Identifier
    user_id: Identifier
    item_id: Identifier
    event_type: Identifier
    timestamp: int = Field(description="Epoch milliseconds, or ISO-8601 with a timezone.")
    session_id: Identifier | None = None
    recommendation_id: Identifier | None = None
    properties: dict[Identifier, PropertyValue] = Field(default_factory=dict, max_length=32)

    @field_validator("event_type")
    @classmethod
    def _known_type(cls, value: str, info: ValidationInfo) -> str:
        known = (info.context or {}).get("event_types")
        if known is not None and value not in known:
            raise ValueError(f"unknown event_type {value!r}; expected one of {sorted(known)}")
        return value

    @field_validator("timestamp", mode="before")
    @classmethod
    def _epoch_ms(cls, value: Any, info: ValidationInfo) -> int:
        millis = _to_epoch_ms(value)
        latest = (info.context or {}).get("latest_ms")
        if latest is not None and millis > latest:
            raise ValueError("timestamp is too far in the future; send the time of the event")
        return millis


class ItemEvent(BaseModel):
    """A catalogue entry: what the service may recommend and how it can be filtered."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    item_id: Identifier
    categories: list[Label] = Field(default_factory=list, max_length=32)
    tags: list[Label] = Field(default_factory=list, max_length=64)
    available: bool = True
    title: Annotated[str, StringConstraints(max_length=512)] | None = None


def _to_epoch_ms(value: Any) -> int:
    if isinstance(value, bool):
        raise ValueError("timestamp must be epoch milliseconds or an ISO-8601 string")
    if isinstance(value, int | float):
        if not math.isfinite(value) or value < 0:
            raise ValueError("timestamp must be a finite, non-negative number of milliseconds")
        if value < SMALLEST_PLAUSIBLE_EPOCH_MS:
            raise ValueError("timestamp looks like epoch seconds; send epoch milliseconds")
        return int(value)
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            raise ValueError("timestamp is not ISO-8601 (e.g. 2026-11-28T10:00:00Z)") from None
        if parsed.tzinfo is None:
            raise ValueError("timestamp has no timezone; add one (e.g. Z or +01:00)")
        return _to_epoch_ms(parsed.timestamp() * 1000)
    raise ValueError("timestamp must be epoch milliseconds or an ISO-8601 string")


M = TypeVar("M", bound=BaseModel)


class InvalidRecord(ValueError):
    """A record that must not reach the state; `reason` says what to fix."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def describe_validation_error(error: ValidationError) -> str:
    """One line per problem, `field: message`, for dead-letter headers and HTTP 422 bodies."""
    lines = []
    for problem in error.errors(include_url=False):
        where = ".".join(str(part) for part in problem["loc"]) or "record"
        message = problem["msg"].removeprefix("Value error, ")
        lines.append(f"{where}: {message}")
    return "; ".join(lines)


def validation_context(settings: Settings, now_ms: int | None = None) -> dict[str, Any]:
    now_ms = int(time.time() * 1000) if now_ms is None else now_ms
    return {
        "event_types": settings.event_types,
        "latest_ms": now_ms + int(settings.max_future_seconds * 1000),
    }


def parse_interaction(
    raw: bytes | dict[str, Any], settings: Settings, now_ms: int | None = None
) -> InteractionEvent:
    """Validate one interaction record (JSON bytes or a decoded object) or raise InvalidRecord."""
    return _parse(InteractionEvent, raw, settings, validation_context(settings, now_ms))


def parse_item(raw: bytes | dict[str, Any], settings: Settings) -> ItemEvent:
    """Validate one catalogue record or raise InvalidRecord."""
    return _parse(ItemEvent, raw, settings, {})


def _parse(
    model: type[M], raw: bytes | dict[str, Any], settings: Settings, context: dict[str, Any]
) -> M:
    if isinstance(raw, bytes) and len(raw) > settings.max_event_bytes:
        raise InvalidRecord(f"record is {len(raw)} bytes; the limit is {settings.max_event_bytes}")
    try:
        if isinstance(raw, bytes):
            return model.model_validate_json(raw, context=context)
        return model.model_validate(raw, context=context)
    except ValidationError as error:
        raise InvalidRecord(describe_validation_error(error)) from None
