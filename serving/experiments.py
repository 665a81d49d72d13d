"""Online experiments on the read path: their definitions, kept in Redis so every service
process sees the same; and a user's list served by the variant the user is assigned to, or,
in interleaving mode, two variants' lists merged by team draft.

At most one experiment runs at a time (a new one may not overlap a running or planned one),
so a list belongs to one experiment and the variants' users are disjoint.
"""

import random
from collections.abc import Collection, Sequence

from pydantic import ValidationError
from redis.asyncio import Redis

from streamrec.contract import (
    SHOWN_SEPARATOR,
    Experiment,
    ExperimentRecord,
    RedisKeys,
    Reused,
    ServedExperiment,
    Variant,
    assign,
    stored,
    with_overrides,
)
from streamrec.contract.clock import clock_ms

from .errors import ApiError
from .experiment_results import ExperimentResults, VariantCounts, analyse
from .recommender import RecommendationList, Recommender
from .telemetry import record_list

#: How long a service process trusts its copy of the running experiment.
CACHE_SECONDS = 1.0


def team_draft(rankings: Sequence[Sequence[str]], n: int, rng: random.Random
               ) -> list[tuple[str, int]]:
    """Team-draft interleaving of two rankings (Radlinski, Kurup and Joachims 2008): the team
    with fewer picks so far (a coin decides ties) adds its best item not yet in the list.
    Returns (item, team) pairs, at most n."""
    merged: list[tuple[str, int]] = []
    taken: set[str] = set()
    picks = [0, 0]
    while len(merged) < n:
        first = 0 if picks[0] < picks[1] or (picks[0] == picks[1] and rng.random() < 0.5) else 1
        for team in (first, 1 - first):
            item = next((i for i in rankings[team] if i not in taken), None)
            if item is not None:
                merged.append((item, team))
                taken.add(item)
                picks[team] += 1
                break
        else:
            break  # both rankings used up
    return merged


def _ends(experiment: ExperimentRecord) -> float:
    ends = [t for t in (experiment.end, experiment.stopped_at) if t is not None]
    return min(ends) if ends else float("inf")


class Experiments:
    def __init__(self, redis: Redis, keys: RedisKeys) -> None:
        self._redis = redis
        self._keys = keys
        self._running: Reused[ExperimentRecord | None] = Reused(CACHE_SECONDS)
        self._recommenders: dict[tuple[str, int, str], Recommender] = {}

    async def all(self) -> list[ExperimentRecord]:
        stored_ = await self._redis.hgetall(self._keys.experiments)
        return sorted((ExperimentRecord.model_validate_json(v) for v in stored_.values()),
                      key=lambda e: (e.start, e.name))

    async def get(self, name: str) -> ExperimentRecord:
        found = await self._redis.hget(self._keys.experiments, name)
        if found is None:
            raise ApiError(404, f"no experiment {name!r}")
        return ExperimentRecord.model_validate_json(found)

    async def create(self, experiment: Experiment, recommender: Recommender,
                     now_ms: int | None = None) -> ExperimentRecord:
        """Store a new experiment; 422 when a variant's settings do not fit together, 409
        when the name is taken or another experiment runs in the same time."""
        record = stored(experiment, now_ms)
        for variant in record.variants:
            try:
                with_overrides(recommender.settings, variant)
            except (ValueError, ValidationError) as error:
                raise ApiError(422, "invalid request",
                               [f"variants.{variant.name}.settings: {error}"]) from None
        for other in await self.all():
            if other.name != record.name and record.start < _ends(other) \
                    and other.start < _ends(record):
                raise ApiError(409, f"experiment {other.name!r} runs at the same time; stop it "
                               "or choose another start")
        if not await self._redis.hsetnx(self._keys.experiments, record.name,
                                        record.model_dump_json()):
            raise ApiError(409, f"an experiment named {record.name!r} exists")
        self._running.forget()
        return record

    async def stop(self, name: str, now_ms: int | None = None) -> ExperimentRecord:
        record = await self.get(name)
        if record.stopped_at is None:
            now_ms = clock_ms(now_ms)
            record = record.model_copy(update={"stopped_at": now_ms})
            await self._redis.hset(self._keys.experiments, name, record.model_dump_json())
        self._running.forget()
        return record

    async def results(self, name: str, now_ms: int | None = None) -> ExperimentResults:
        record = await self.get(name)
        counters = await self._redis.hgetall(self._keys.experiment_metrics(name))
        by_variant: dict[str, dict[str, int]] = {}
        for field, value in counters.items():
            variant, _, count = field.decode().partition(SHOWN_SEPARATOR)
            by_variant.setdefault(variant, {})[count] = int(value)
        now_ms = clock_ms(now_ms)
        return analyse(record, {variant: VariantCounts.from_counters(counts)
                                for variant, counts in by_variant.items()}, now_ms)

    async def running(self, now_ms: int) -> ExperimentRecord | None:
        async def read() -> ExperimentRecord | None:
            return next((e for e in await self.all() if e.running(now_ms)), None)

        experiment = await self._running.get(read)
        return experiment if experiment is not None and experiment.running(now_ms) else None

    async def for_user(self, recommender: Recommender, user_id: str, n: int, *,
                       category: str | None = None, exclude: Collection[str] = (),
                       max_per_category: int | None = None) -> RecommendationList:
        """The user's list: from their variant when an experiment runs and includes them,
        else the default personalised list."""
        experiment = await self.running(clock_ms())
        variant = None if experiment is None else assign(experiment, user_id)
        if experiment is None or variant is None:
            return await recommender.for_user(user_id, n, category=category, exclude=exclude,
                                              max_per_category=max_per_category)

        async def served_by(variant: Variant) -> RecommendationList:
            serving = self._variant_recommender(experiment, variant, recommender)
            if variant.settings.recommender == "trending":
                return await serving.trending(n, category=category, exclude=exclude,
                                              user_id=user_id)
            return await serving.for_user(user_id, n, category=category, exclude=exclude,
                                          max_per_category=max_per_category)

        if experiment.mode == "ab":
            served = await served_by(experiment.variant(variant))
            return served.model_copy(update={"experiment": ServedExperiment(
                name=experiment.name, variant=variant)})
        lists = [await served_by(v) for v in experiment.variants]
        by_team = [{item.item_id: item for item in served.items} for served in lists]
        merged = team_draft([list(items) for items in by_team], n,
                            random.Random(lists[0].recommendation_id))
        # one list is served (the first's id, the merged items): counted once, as that
        record_list(lists[0].recommender, lists[0].recommendation_id, len(merged))
        return lists[0].model_copy(update={
            "items": [by_team[team][item] for item, team in merged],
            "experiment": ServedExperiment(name=experiment.name, variant=None, placed_by={
                item: experiment.variants[team].name for item, team in merged})})

    def _variant_recommender(self, experiment: ExperimentRecord, variant: Variant,
                             recommender: Recommender) -> Recommender:
        """A recommender with the variant's settings, made once per process."""
        made_for = (experiment.name, experiment.start, variant.name)
        if made_for not in self._recommenders:
            self._recommenders[made_for] = Recommender(
                recommender.reader, with_overrides(recommender.settings, variant))
        return self._recommenders[made_for]
