"""What producers may put on the topics, and the one validator both the worker and the HTTP
service apply to it, so a record rejected by one is rejected by the other with the same reason.
"""

import hashlib
import math
import re
import unicodedata
import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Any, Literal, TypeVar

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    StringConstraints,
    Tag,
    TypeAdapter,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from .clock import clock_ms
from .decay import DECAY_HALF_LIVES_AHEAD, utc_text
from .pseudonyms import pseudonymise
from .settings import FORGET, IMPRESSION, MAX_BLEND_WEIGHTINGS, Settings

#: Characters no id or label may hold. Ids are parts of Redis keys, URL paths, comma-separated
#: `exclude` lists and log lines: '/' cannot be addressed in a path, ',' cannot be excluded.
ID_FORBIDDEN = "/,"
#: Labels (categories, tags) travel in queries, not paths, and are joined by '|' in the item's
#: metadata.
LABEL_FORBIDDEN = "|"
#: Unicode categories that are never part of a real id: control, format (zero-width, bidi
#: controls), surrogate, private use, unassigned, line and paragraph separators.
INVISIBLE_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})


def _addressable(forbidden: str) -> Callable[[str], str]:
    #: The common case, printable ASCII without a forbidden character, in one regex match.
    edge = f"[^\\x00-\\x20\\x7f-\\U0010ffff{re.escape(forbidden)}]"
    inner = f"[^\\x00-\\x1f\\x7f-\\U0010ffff{re.escape(forbidden)}]"
    plain = re.compile(f"{edge}(?:{inner}*{edge})?")

    def check(value: str) -> str:
        """NFC, so look-alike spellings of one id are one id; then reject what cannot be
        addressed or seen."""
        if plain.fullmatch(value):
            return value
        value = unicodedata.normalize("NFC", value)
        if value != value.strip():
            raise ValueError("must not start or end with blanks")
        for char in value:
            if unicodedata.category(char) in INVISIBLE_CATEGORIES:
                raise ValueError(f"must not contain invisible or control characters "
                                 f"(U+{ord(char):04X})")
            if char in forbidden:
                raise ValueError(f"must not contain {char!r}")
        return value

    return check


#: The one rule for user, item, event, session and recommendation ids (events, catalogue,
#: URL paths and queries alike).
Identifier = Annotated[str, StringConstraints(min_length=1, max_length=256),
                       AfterValidator(_addressable(ID_FORBIDDEN))]
#: Categories and tags: visible, NFC, no surrounding blanks, no '|'; shorter than ids.
Label = Annotated[str, StringConstraints(min_length=1, max_length=128),
                  AfterValidator(_addressable(LABEL_FORBIDDEN))]
PropertyValue = Annotated[str, StringConstraints(max_length=1024)] | int | float | bool | None

#: Longest list the service serves, and so the most items one impression event can carry.
MAX_LIST_LENGTH = 500
#: The list length the service serves when none is asked for.
DEFAULT_LIST_LENGTH = 10
#: Epoch milliseconds below this are almost surely epoch seconds sent by mistake (it is 1973).
SMALLEST_PLAUSIBLE_EPOCH_MS = 100_000_000_000


class _UserEvent(BaseModel):
    """Fields every event about a user carries; the topic is keyed by `user_id`."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    event_id: Identifier
    user_id: Identifier
    timestamp: int = Field(description="Epoch milliseconds, or ISO-8601 with a timezone.")
    session_id: Identifier | None = None
    recommendation_id: Identifier | None = None
    properties: dict[Identifier, PropertyValue] = Field(default_factory=dict, max_length=32)

    @field_validator("user_id")
    @classmethod
    def _pseudonymised(cls, value: str, info: ValidationInfo) -> str:
        return pseudonymise(value, (info.context or {}).get("id_key"))

    @field_validator("timestamp", mode="before")
    @classmethod
    def _epoch_ms(cls, value: Any, info: ValidationInfo) -> int:
        millis = _to_epoch_ms(value)
        latest = (info.context or {}).get("latest_ms")
        if latest is not None and millis > latest:
            raise ValueError("timestamp is too far in the future; send the time of the event")
        return millis


class InteractionEvent(_UserEvent):
    """A user did something with an item."""

    item_id: Identifier
    event_type: Identifier

    @field_validator("event_type")
    @classmethod
    def _known_type(cls, value: str, info: ValidationInfo) -> str:
        known = (info.context or {}).get("event_types")
        if known is not None and value not in known:
            raise ValueError(f"unknown event_type {value!r}; expected one of {sorted(known)}")
        return value

    @field_validator("timestamp")
    @classmethod
    def _within_decay_horizon(cls, value: int, info: ValidationInfo) -> int:
        """Past the horizon its decayed weights would overflow (streamrec.contract.decay);
        other events (impressions, erasures) add no decayed weight and pass."""
        horizon = (info.context or {}).get("decay_horizon")
        if horizon is not None and value > horizon[0]:
            raise ValueError(
                f"timestamp is past {utc_text(horizon[0])}, the last time this deployment "
                f"can learn ({DECAY_HALF_LIVES_AHEAD} half-lives of {horizon[1]} after "
                "decay_anchor_ms); its operator must move decay_anchor_ms (a new state)")
        return value


#: The lists the service serves: the only recommender names an impression may carry, so
#: metrics per recommender stay a short, fixed table.
Recommender = Literal["personalised", "session", "similar", "trending", "popular", "unattributed"]
#: The recommender of a list an app showed on its own (not served, so it credits no one).
UNATTRIBUTED: Recommender = "unattributed"


class ImpressionEvent(_UserEvent):
    """A list shown to a user, items in display order. One event per list, not per item:
    the service publishes one for every list it serves, so its cost is per request."""

    event_type: Literal["impression"]
    item_ids: list[Identifier] = Field(min_length=1, max_length=MAX_LIST_LENGTH)
    recommender: Recommender = Field(
        UNATTRIBUTED, description="Which of the service's recommenders made the list.")
    experiment: Identifier | None = Field(
        None, description="The online experiment the list was served in.")
    variant: Identifier | None = Field(
        None, description="The user's variant of that experiment (A/B).")
    item_variants: list[Identifier] = Field(
        default_factory=list, max_length=MAX_LIST_LENGTH,
        description="Interleaving: per item, in order, the variant that placed it.")
    weighting_lists: dict[Identifier, Annotated[list[Identifier], Field(
        max_length=MAX_LIST_LENGTH)]] = Field(
        default_factory=dict, max_length=MAX_BLEND_WEIGHTINGS,
        description="Self-tuning blend: per weighting of the sources, the top items it would "
        "have served (the user's next new item judges them).")
    signature: str | None = Field(
        None, pattern="^[0-9a-f]{32}$", description="The service's signature of the "
        "attribution above (recommender, experiment, weighting_lists): set on the lists it "
        "publishes; an impression that claims attribution without it is refused.")

    @model_validator(mode="after")
    def _attributed_once(self) -> "ImpressionEvent":
        """A list of an experiment names its variant (A/B) or each item's (interleaving)."""
        if self.experiment is None:
            if self.variant is not None or self.item_variants:
                raise ValueError("variant and item_variants need an experiment")
        elif (self.variant is None) == (not self.item_variants):
            raise ValueError("an experiment's list names either its variant or item_variants")
        if self.item_variants and len(self.item_variants) != len(self.item_ids):
            raise ValueError("item_variants must name one variant per item")
        return self


class ForgetRequest(_UserEvent):
    """Erase a user: everything they contributed is taken back out of the shared state and
    their own keys are deleted; their events stamped at or before `timestamp` that arrive
    later are dropped. `event_id` names the erasure (its audit entry)."""

    event_type: Literal["forget"]

    @property
    def pseudonym(self) -> str:
        return pseudonym(self.user_id)


def forget_request(user_id: str) -> ForgetRequest:
    """A request to erase `user_id` (as stored), named by a fresh id and stamped now: the
    user's events stamped before it that arrive later are dropped."""
    return ForgetRequest(event_id=uuid.uuid4().hex, user_id=user_id, event_type=FORGET,
                         timestamp=clock_ms())


def pseudonym(user_id: str) -> str:
    """How an erased user is named in the audit: not the id, but the same id every time."""
    return hashlib.sha256(user_id.encode()).hexdigest()[:16]


def _event_kind(value: Any) -> str:
    event_type = value.get("event_type") if isinstance(value, dict) else getattr(
        value, "event_type", None)
    return event_type if event_type in (IMPRESSION, FORGET) else "interaction"


UserEvent = Annotated[
    Annotated[InteractionEvent, Tag("interaction")] | Annotated[ImpressionEvent, Tag(IMPRESSION)]
    | Annotated[ForgetRequest, Tag(FORGET)],
    Discriminator(_event_kind),
]
_USER_EVENT = TypeAdapter(UserEvent)
_EVENT_KINDS = ("interaction", IMPRESSION, FORGET)


class ItemEvent(BaseModel):
    """A catalogue entry: what the service may recommend and how it can be filtered."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    item_id: Identifier
    categories: list[Label] = Field(default_factory=list, max_length=32)
    tags: list[Label] = Field(default_factory=list, max_length=64)
    available: bool = True
    title: Annotated[str, StringConstraints(max_length=512)] | None = None

    @field_validator("categories", "tags")
    @classmethod
    def _once_each(cls, labels: list[str]) -> list[str]:
        """A label listed twice counts once (it would double category popularity)."""
        return list(dict.fromkeys(labels))


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


M = TypeVar("M")
_ITEM_EVENT = TypeAdapter(ItemEvent)


class InvalidRecord(ValueError):
    """A record that must not reach the state; `reason` says what to fix, `kind` names the
    problem from a small fixed set (pydantic's error type of the first problem, or
    `too_large`), fit for a metric's label."""

    def __init__(self, reason: str, kind: str = "invalid") -> None:
        super().__init__(reason)
        self.reason = reason
        self.kind = kind


def describe_validation_error(error: ValidationError) -> str:
    """One line per problem, `field: message`, for dead-letter headers and HTTP 422 bodies."""
    lines = []
    for problem in error.errors(include_url=False):
        location = problem["loc"]
        if location and location[0] in _EVENT_KINDS:  # the union's branch, not a field
            location = location[1:]
        where = ".".join(str(part) for part in location) or "record"
        message = problem["msg"].removeprefix("Value error, ")
        lines.append(f"{where}: {message}")
    return "; ".join(lines)


def validation_context(settings: Settings, now_ms: int | None = None) -> dict[str, Any]:
    now_ms = clock_ms(now_ms)
    return {
        "event_types": settings.event_types,
        "latest_ms": now_ms + int(settings.max_future_seconds * 1000),
        "decay_horizon": settings.decay_horizon,
        "id_key": settings.id_key,
    }


def parse_event(
    raw: bytes | dict[str, Any], settings: Settings, now_ms: int | None = None
) -> InteractionEvent | ImpressionEvent | ForgetRequest:
    """Validate one record of the events topic (JSON bytes or a decoded object): an
    interaction, or an impression when `event_type` is "impression". Raises InvalidRecord."""
    return _parse(_USER_EVENT, raw, settings, validation_context(settings, now_ms))


def parse_item(raw: bytes | dict[str, Any], settings: Settings) -> ItemEvent:
    """Validate one catalogue record or raise InvalidRecord."""
    return _parse(_ITEM_EVENT, raw, settings, {})


def _parse(
    adapter: TypeAdapter[M], raw: bytes | dict[str, Any], settings: Settings,
    context: dict[str, Any],
) -> M:
    if isinstance(raw, bytes) and len(raw) > settings.max_event_bytes:
        raise InvalidRecord(f"record is {len(raw)} bytes; the limit is {settings.max_event_bytes}",
                            "too_large")
    try:
        if isinstance(raw, bytes):
            return adapter.validate_json(raw, context=context)
        return adapter.validate_python(raw, context=context)
    except ValidationError as error:
        raise InvalidRecord(describe_validation_error(error),
                            error.errors(include_url=False)[0]["type"]) from None
