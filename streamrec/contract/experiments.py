"""Online experiments: what an admin defines, which settings a variant may change, and which
variant a user is in.

A variant is a set of overrides of the *recommendation* settings only (`VariantSettings`:
the blend, the votes, the similarity, the impression penalty, the category cap, and which
recommender serves the list); a variant that names any other setting (Redis, auth, limits)
is refused. Assignment is stateless: a hash of (experiment, user) picks the variant, so every
service process puts a user in the same one without asking anybody.
"""

import hashlib
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    create_model,
    field_validator,
    model_serializer,
    model_validator,
)

from .clock import clock_ms
from .events import Identifier, _to_epoch_ms
from .settings import Settings

#: The settings a variant may override: how a list is scored and re-ranked, nothing else.
RECOMMENDATION_SETTINGS = (
    "similarity", "similarity_alpha", "similarity_exponent", "vote_items", "votes_by_event_type",
    "vote_position_decay", "earlier_session_vote", "candidate_row_depth",
    "sequence_votes", "sequence_vote_decay", "cooccurrence_weight", "sequence_weight",
    "blend_weightings", "neighbours_weight", "neighbour_count", "neighbour_support",
    "impressions_before_penalty", "impression_penalty", "max_per_category",
)
#: The recommenders a variant of `GET /v1/users/{id}/recommendations` may serve.
VariantRecommender = Literal["personalised", "trending"]
ExperimentMode = Literal["ab", "interleave"]
#: Planned shares must add up to 1 within this.
SHARE_TOLERANCE = 1e-6


class _Overrides(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    @model_validator(mode="before")
    @classmethod
    def _only_recommendation_settings(cls, values: Any) -> Any:
        if isinstance(values, dict):
            others = sorted(set(values) - set(cls.model_fields))
            if others:
                raise ValueError(f"{', '.join(others)}: not a recommendation setting; a variant "
                                 f"may override only {sorted(cls.model_fields)}")
        return values

    @model_serializer(mode="wrap")
    def _named_only(self, serialize: SerializerFunctionWrapHandler) -> dict[str, Any]:
        """Only the settings the variant names: an override left out is no override (and
        None is a value: `max_per_category` None means no cap)."""
        return {name: value for name, value in serialize(self).items()
                if name in self.model_fields_set}

    def overrides(self) -> dict[str, Any]:
        """The settings this variant changes, without `recommender`."""
        return {name: getattr(self, name) for name in self.model_fields_set
                if name != "recommender"}


def _same_rules_as(name: str) -> Any:
    """The type of setting `name` with its constraints, so an override is validated as the
    setting itself would be (None only where the setting may be unset)."""
    field = Settings.model_fields[name]
    if not field.metadata:
        return field.annotation
    return Annotated[field.annotation, *field.metadata]  # type: ignore[name-defined]


VariantSettings = create_model(
    "VariantSettings", __base__=_Overrides,
    recommender=(VariantRecommender, Field(
        "personalised", description="The recommender that serves the variant's lists.")),
    **{name: (_same_rules_as(name), Field(None, description=Settings.model_fields[name]
                                          .description)) for name in RECOMMENDATION_SETTINGS},
)


def with_overrides(settings: Settings, variant: "Variant") -> Settings:
    """`settings` as the variant changes them; ValueError when the result is inconsistent
    (e.g. more voting items than the history keeps)."""
    changed = settings.model_copy(update=variant.settings.overrides())
    Settings._check_windows(changed)
    return changed


class Variant(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    name: Identifier
    share: float = Field(0.5, gt=0, le=1, description="Planned share of the experiment's "
                         "users (ignored in interleaving mode).")
    settings: VariantSettings = Field(  # type: ignore[valid-type]
        default_factory=VariantSettings, description="Overrides of the recommendation settings.")


def _epoch_ms(value: Any) -> int | None:
    return None if value is None else _to_epoch_ms(value)


class Experiment(BaseModel):
    """What an admin posts: the first variant is the control the others are compared with."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    name: Identifier
    variants: list[Variant] = Field(min_length=2, max_length=10)
    mode: ExperimentMode = Field("ab", description="'ab': each user sees one variant; "
                                 "'interleave': two variants' lists merged by team draft.")
    holdout: float = Field(0.0, ge=0, lt=1, description="Share of users left out (served as "
                           "if there were no experiment).")
    start: int | None = Field(None, description="Epoch ms or ISO-8601; default: now.")
    end: int | None = Field(None, description="Epoch ms or ISO-8601; default: until stopped.")

    @field_validator("start", "end", mode="before")
    @classmethod
    def _to_ms(cls, value: Any) -> int | None:
        return _epoch_ms(value)

    @model_validator(mode="after")
    def _consistent(self) -> "Experiment":
        names = [variant.name for variant in self.variants]
        if len(set(names)) != len(names):
            raise ValueError("variant names must differ")
        if self.mode == "interleave" and len(self.variants) != 2:
            raise ValueError("interleaving compares exactly two variants")
        if self.mode == "ab" and abs(sum(v.share for v in self.variants) - 1) > SHARE_TOLERANCE:
            raise ValueError("variant shares must add up to 1")
        if self.start is not None and self.end is not None and self.end <= self.start:
            raise ValueError("end must be after start")
        return self


class ExperimentRecord(Experiment):
    """An experiment as stored: its times settled, and when it was stopped."""

    start: int
    stopped_at: int | None = None

    def running(self, now_ms: int) -> bool:
        return (self.stopped_at is None and self.start <= now_ms
                and (self.end is None or now_ms < self.end))

    def variant(self, name: str) -> Variant:
        return next(variant for variant in self.variants if variant.name == name)


def stored(experiment: Experiment, now_ms: int | None = None) -> ExperimentRecord:
    now_ms = clock_ms(now_ms)
    return ExperimentRecord(**{**experiment.model_dump(), "start": experiment.start or now_ms})


class ServedExperiment(BaseModel):
    """What a served list says about the experiment it belongs to (null when none)."""

    name: str
    variant: str | None = Field(description="The user's variant; null for an interleaved list.")
    placed_by: dict[str, str] | None = Field(
        None, description="Interleaving: item id -> the variant that placed it.")


def unit_point(experiment: str, user_id: str) -> float:
    """Where (experiment, user) falls in [0, 1): uniform, independent between experiments."""
    digest = hashlib.sha256(f"{experiment}\x1f{user_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def assign(experiment: Experiment, user_id: str) -> str | None:
    """The user's variant, or None when the holdout keeps them out. The holdout takes the
    bottom of [0, 1); the variants split the rest in their order by share."""
    point = unit_point(experiment.name, user_id)
    if point < experiment.holdout:
        return None
    point = (point - experiment.holdout) / (1 - experiment.holdout)
    total = sum(variant.share for variant in experiment.variants)
    reached = 0.0
    for variant in experiment.variants:
        reached += variant.share / total
        if point < reached:
            return variant.name
    return experiment.variants[-1].name
