"""Experiments on a real Redis: the worker's counters per variant exactly, once, within any
command budget; the results read from them; variants and interleaved lists served."""

import hashlib

import pytest
from redis.asyncio import Redis

from serving.errors import ApiError
from serving.experiments import Experiments
from serving.recommender import Recommender
from serving.state_reader import StateReader
from stream_app.state_writer import StateWriter, StreamRecord
from streamrec.contract import (
    DAY_MS,
    Experiment,
    ImpressionEvent,
    InteractionEvent,
    ItemEvent,
    RedisKeys,
    Settings,
    assign,
    forget_request,
)
from tests.support.servers import Servers

T0 = Settings().decay_anchor_ms + 10 * DAY_MS


def shown(event_id: str, user: str, list_id: str, items: list[str], **experiment: object
          ) -> ImpressionEvent:
    return ImpressionEvent(event_id=event_id, user_id=user, event_type="impression",
                           item_ids=items, timestamp=T0, recommendation_id=list_id,
                           recommender="personalised", **experiment)


def acted(event_id: str, user: str, item: str, list_id: str, event_type: str = "click"
          ) -> InteractionEvent:
    return InteractionEvent(event_id=event_id, user_id=user, item_id=item,
                            event_type=event_type, timestamp=T0, recommendation_id=list_id)


#: u1 sees two lists of variant a, u2 one of b; u3 one interleaved list (p and r placed by a,
#: q by b); u4 a list outside any experiment.
STREAM = [
    shown("s1", "u1", "L1", ["x", "y"], experiment="exp", variant="a"),
    acted("c1", "u1", "x", "L1"),
    acted("c2", "u1", "x", "L1"),              # the same list, item and type: counted once
    shown("s2", "u1", "L2", ["y", "z"], experiment="exp", variant="a"),
    acted("c3", "u1", "z", "L2"),
    acted("c4", "u1", "q", "L2"),              # not in the list: not counted
    acted("p1", "u1", "x", "L1", "purchase"),
    acted("p2", "u1", "y", "L2", "purchase"),  # a second purchase: still one converted user
    shown("s3", "u2", "L3", ["x"], experiment="exp", variant="b"),
    acted("c5", "u2", "x", "L3"),
    shown("s4", "u3", "L4", ["p", "q", "r"], experiment="mix", item_variants=["a", "b", "a"]),
    acted("c6", "u3", "p", "L4"),              # a leads: the list prefers a
    acted("c7", "u3", "q", "L4"),              # level: no preference
    acted("c8", "u3", "r", "L4"),              # a leads again
    acted("p3", "u3", "q", "L4", "purchase"),
    shown("s5", "u4", "L5", ["x"]),
    acted("c9", "u4", "x", "L5"),
]


def records() -> list[StreamRecord]:
    return [StreamRecord("events:0", offset, event) for offset, event in enumerate(STREAM)]


async def counters(redis: Redis, key: str) -> dict[str, dict[str, int]]:
    by_variant: dict[str, dict[str, int]] = {}
    for field, value in (await redis.hgetall(key)).items():
        variant, _, name = field.decode().partition("\x1f")
        by_variant.setdefault(variant, {})[name] = int(value)
    return by_variant


@pytest.mark.parametrize("budget", [100_000, 1], ids=["one call", "a call per command"])
async def test_variants_count_exactly_once_within_any_budget(redis: Redis, servers: Servers,
                                                            budget: int) -> None:
    settings = servers.settings(max_commands_per_script=budget)
    writer = StateWriter(redis, settings)
    k = RedisKeys(settings.key_prefix)
    await writer.apply(records())
    assert (await writer.apply(records())).duplicates_skipped == len(STREAM)  # redelivered

    # u1 (x clicks, y items shown) goes (0, 2) -> (1, 2) -> (1, 4) -> (2, 4): Σx² = 4,
    # Σy² = 16, Σxy = 8; u2 ends at (1, 1).
    assert await counters(redis, k.experiment_metrics("exp")) == {
        "a": {"users": 1, "lists": 2, "items_shown": 4, "click": 2, "purchase": 2,
              "converted_users": 1, "items_shown_squares": 16, "click_squares": 4,
              "clicks_by_items_shown": 8},
        "b": {"users": 1, "lists": 1, "items_shown": 1, "click": 1, "items_shown_squares": 1,
              "click_squares": 1, "clicks_by_items_shown": 1},
    }
    assert await counters(redis, k.experiment_metrics("mix")) == {
        "a": {"users": 1, "lists": 1, "items_shown": 2, "click": 2, "preferred_lists": 1},
        "b": {"users": 1, "lists": 1, "items_shown": 1, "click": 1, "purchase": 1},
    }
    # Every list counts for its recommender as before, in an experiment or not.
    assert await redis.hgetall(k.recommender_metrics("personalised")) == {
        b"impression": b"5", b"items_shown": b"9", b"click": b"7", b"purchase": b"3"}


def experiment(name: str = "exp", **changes: object) -> Experiment:
    return Experiment(**{"name": name, "variants": [
        {"name": "a", "share": 0.5},
        {"name": "b", "share": 0.5, "settings": {"recommender": "trending"}}], **changes})


async def test_results_are_read_from_the_counters(redis: Redis, settings: Settings) -> None:
    experiments = Experiments(redis, RedisKeys(settings.key_prefix))
    recommender = Recommender(StateReader(redis, RedisKeys(settings.key_prefix)), settings)
    await experiments.create(experiment(start=T0), recommender)
    await StateWriter(redis, settings).apply(records())
    results = await experiments.results("exp", now_ms=T0 + 1)
    a, b = results.variants["a"], results.variants["b"]
    assert (a.users, a.lists, a.impressions, a.clicks, a.purchases, a.ctr, a.conversion) == (
        1, 2, 4, 2, 2, 0.5, 1.0)
    assert (b.users, b.impressions, b.clicks, b.ctr, b.conversion) == (1, 1, 1, 1.0, 0.0)
    # Two users are too few to compare: no lift, nothing declared.
    [comparison] = results.comparisons
    assert (comparison.variant, comparison.against, comparison.lift, comparison.significant
            ) == ("b", "a", None, False)
    assert results.sample_ratio_mismatch.observed == {"a": 1, "b": 1}
    assert results.sample_ratio_mismatch.flagged is False
    assert results.running


async def test_experiments_may_not_overlap_and_stop(redis: Redis, settings: Settings) -> None:
    experiments = Experiments(redis, RedisKeys(settings.key_prefix))
    recommender = Recommender(StateReader(redis, RedisKeys(settings.key_prefix)), settings)
    await experiments.create(experiment(start=T0), recommender)
    with pytest.raises(ApiError) as overlapping:
        await experiments.create(experiment("later", start=T0 + 1000), recommender)
    assert overlapping.value.status == 409
    with pytest.raises(ApiError) as too_many_votes:  # more voters than the history keeps
        await experiments.create(experiment("x", variants=[
            {"name": "a", "share": 0.5},
            {"name": "b", "share": 0.5, "settings": {"vote_items": 60}}]), recommender)
    assert too_many_votes.value.status == 422
    stopped = await experiments.stop("exp", now_ms=T0 + 500)
    assert stopped.stopped_at == T0 + 500 and not stopped.running(T0 + 600)
    await experiments.create(experiment("later", start=T0 + 1000), recommender)
    assert [e.name for e in await experiments.all()] == ["exp", "later"]


async def test_users_get_their_variant_or_an_interleaved_list(redis: Redis, settings: Settings
                                                             ) -> None:
    catalogue = [ItemEvent(item_id=item, categories=["c"]) for item in "abcdef"]
    # Co-occurrence: everybody who saw a also saw b and c; trending: d, e, f most.
    history = [("v1", "a"), ("v1", "b"), ("v2", "a"), ("v2", "c"), ("me", "a")]
    history += [(f"fan{k}", item) for k in range(3) for item in "def"]
    writer = StateWriter(redis, settings)
    await writer.apply([StreamRecord("items:0", k, item) for k, item in enumerate(catalogue)])
    now = T0 + DAY_MS
    await writer.apply([StreamRecord("events:0", k, InteractionEvent(
        event_id=f"h{k}", user_id=user, item_id=item, event_type="view", timestamp=now))
        for k, (user, item) in enumerate(history)])
    experiments = Experiments(redis, RedisKeys(settings.key_prefix))
    recommender = Recommender(StateReader(redis, RedisKeys(settings.key_prefix)), settings)

    ab = await experiments.create(experiment(), recommender)
    served = await experiments.for_user(recommender, "me", 3)
    variant = assign(ab, "me")
    assert served.experiment.name == "exp" and served.experiment.variant == variant
    expected = {"a": {"b", "c"}, "b": {"d", "e", "f"}}[variant]
    assert expected <= {item.item_id for item in served.items}
    assert served.recommender == {"a": "personalised", "b": "trending"}[variant]
    await experiments.stop("exp")
    assert (await experiments.for_user(recommender, "me", 3)).experiment is None

    await experiments.create(experiment("mix", mode="interleave"), recommender)
    mixed = await experiments.for_user(recommender, "me", 4)
    placed_by = mixed.experiment.placed_by
    assert mixed.experiment.variant is None
    assert list(placed_by) == [item.item_id for item in mixed.items]
    # Team draft: each variant placed two of the four, from its own list.
    assert sorted(placed_by.values()) == ["a", "a", "b", "b"]
    assert {item for item, team in placed_by.items() if team == "b"} <= {"d", "e", "f"}


async def test_erasing_a_user_removes_their_entries_from_every_experiment(
        redis: Redis, settings: Settings) -> None:
    writer = StateWriter(redis, settings)
    k = RedisKeys(settings.key_prefix)
    await writer.apply(records())
    await redis.hset(k.experiments, mapping={"exp": "{}", "mix": "{}"})
    totals = await counters(redis, k.experiment_metrics("exp"))
    unit = hashlib.sha1(b"u1").hexdigest()
    assert any(f.decode().startswith(unit) for f in await redis.hkeys(k.experiment_users("exp")))
    await writer.apply([StreamRecord("events:0", len(STREAM), forget_request("u1"))])
    left = [f.decode() for f in await redis.hkeys(k.experiment_users("exp"))]
    assert left and not any(field.startswith(unit) for field in left)  # u2's remain
    assert await counters(redis, k.experiment_metrics("exp")) == totals  # anonymous sums
