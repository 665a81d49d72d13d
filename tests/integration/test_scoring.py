"""Scores summed in Redis (serving/lua/score_candidates.lua) on rows written by hand, with
numbers worked out by hand: similarities, votes times rows, the blend's scaling, reasons,
ties, and what is dropped before or after scoring."""

import pytest
from redis.asyncio import Redis

from serving.scoring import COOCCURRENCE, SEQUENCE
from serving.state_reader import Scored, StateReader
from streamrec.contract import RedisKeys, Settings


async def reader_with(redis: Redis, settings: Settings, rows: dict[str, dict[str, float]],
                      next_rows: dict[str, dict[str, float]] | None = None,
                      counts: dict[str, float] | None = None) -> StateReader:
    keys = RedisKeys(settings.key_prefix)
    for item, row in rows.items():
        await redis.zadd(keys.item_cooccurrence(item), row)
    for item, row in (next_rows or {}).items():
        await redis.zadd(keys.item_next(item), row)
    if counts:
        await redis.hset(keys.item_user_counts, mapping=counts)
    return StateReader(redis, keys)


def blended(scored: Scored) -> list[tuple[str, float, str, str | None]]:
    return [(s.item_id, s.score, s.source, s.because_of) for s in scored.blended]


@pytest.mark.parametrize(("similarity", "expected"), [
    ("count", 3.0), ("cosine", 3 / 6), ("jaccard", 3 / 10)])
async def test_similarities_match_their_formulas(redis: Redis, settings: Settings,
                                                 similarity: str, expected: float) -> None:
    reader = await reader_with(redis, settings, {"i": {"j": 3}}, counts={"i": 4, "j": 9})
    scored = await reader.scored([("i", 1.0, 0.0)], depth=10, similarity=similarity,
                                 weights=(1.0, 0.0, 0.0), top=0, per_source=1)
    assert scored.by_source[COOCCURRENCE] == [("j", pytest.approx(expected))]


@pytest.mark.parametrize(("alpha", "expected"), [(0.5, 3 / 6), (1.0, 3 / 4), (0.0, 3 / 9)])
async def test_asymmetric_cosine_divides_by_n_i_to_the_alpha(
        redis: Redis, settings: Settings, alpha: float, expected: float) -> None:
    reader = await reader_with(redis, settings, {"i": {"j": 3}}, counts={"i": 4, "j": 9})
    scored = await reader.scored([("i", 1.0, 0.0)], depth=10, similarity="cosine",
                                 alpha=alpha, weights=(1.0, 0.0, 0.0), top=0, per_source=1)
    assert scored.by_source[COOCCURRENCE] == [("j", pytest.approx(expected))]


async def test_an_item_nobody_counted_has_no_cosine(redis: Redis, settings: Settings) -> None:
    reader = await reader_with(redis, settings, {"i": {"j": 3}}, counts={"j": 9})
    scored = await reader.scored([("i", 1.0, 0.0)], depth=10, similarity="cosine",
                                 weights=(1.0, 0.0, 0.0), top=0, per_source=1)
    assert scored.by_source[COOCCURRENCE] == [("j", 0.0)]


async def test_scores_sum_weighted_similarities_and_name_the_biggest_contributor(
        redis: Redis, settings: Settings) -> None:
    reader = await reader_with(redis, settings, {"a": {"x": 2, "y": 1}, "b": {"x": 4}},
                               counts={"a": 4, "b": 16, "x": 4, "y": 1})
    scored = await reader.scored([("a", 1.0, 0.0), ("b", 0.5, 0.0)], depth=10,
                                 similarity="cosine", weights=(1.0, 0.0, 0.0), top=1, per_source=2)
    # x: 1.0 * 2/sqrt(4*4) + 0.5 * 4/sqrt(16*4) = 0.5 + 0.25; y: 1.0 * 1/sqrt(4*1) = 0.5
    assert scored.by_source[COOCCURRENCE] == [("x", 0.75), ("y", 0.5)]
    assert blended(scored) == [("x", 1.0, COOCCURRENCE, "a")]


async def test_sequence_scores_sum_votes_times_next_counts(redis: Redis, settings: Settings
                                                           ) -> None:
    reader = await reader_with(redis, settings, {}, {"a": {"x": 1.0}, "b": {"x": 0.5, "z": 2}})
    scored = await reader.scored([("a", 1.0, 1.0), ("b", 0.5, 0.5)], depth=10,
                                 similarity="count", weights=(0.0, 1.0, 0.0), top=2, per_source=2)
    assert scored.by_source[SEQUENCE] == [("x", 1.25), ("z", 1.0)]
    assert blended(scored) == [("x", 1.0, SEQUENCE, "a"), ("z", 0.8, SEQUENCE, "b")]


async def test_the_blend_scales_each_source_to_its_best_then_weights_them(
        redis: Redis, settings: Settings) -> None:
    reader = await reader_with(redis, settings, {"a": {"x": 4, "y": 2}},
                               {"b": {"y": 0.5, "z": 0.25}})
    votes = [("a", 1.0, 0.0), ("b", 0.0, 1.0)]
    scored = await reader.scored(votes, depth=10, similarity="count", weights=(1.0, 2.0, 0.0),
                                 top=3, exclude={"nothing"})
    # x: 4/4 = 1; y: 2/4 + 2 * 0.5/0.5 = 2.5 (sequence leads); z: 2 * 0.25/0.5 = 1
    assert blended(scored) == [("y", 2.5, SEQUENCE, "b"), ("x", 1.0, COOCCURRENCE, "a"),
                               ("z", 1.0, SEQUENCE, "b")]
    # excluding the best co-occurring item keeps the others' scale
    scored = await reader.scored(votes, depth=10, similarity="count", weights=(1.0, 0.0, 0.0),
                                 top=3, exclude={"x"})
    assert blended(scored) == [("y", 0.5, COOCCURRENCE, "a")]


async def test_ties_go_to_the_smaller_id(redis: Redis, settings: Settings) -> None:
    reader = await reader_with(redis, settings, {"a": {"z": 1, "m": 1, "q": 1}})
    scored = await reader.scored([("a", 1.0, 0.0)], depth=10, similarity="count",
                                 weights=(1.0, 0.0, 0.0), top=2)
    assert [s.item_id for s in scored.blended] == ["m", "q"]


async def test_seen_unavailable_and_other_category_items_are_never_scored(
        redis: Redis, settings: Settings) -> None:
    keys = RedisKeys(settings.key_prefix)
    reader = await reader_with(redis, settings, {"a": {"seen": 9, "gone": 8, "other": 7,
                                                       "ok": 1}})
    await redis.zadd(keys.user_affinity("u"), {"seen": 1})
    await redis.sadd(keys.unavailable_items, "gone")
    await redis.sadd(keys.category_items("c"), "ok", "seen", "gone")
    scored = await reader.scored([("a", 1.0, 0.0)], depth=10, similarity="count",
                                 weights=(1.0, 0.0, 0.0), top=5, per_source=5, user_id="u",
                                 category="c")
    assert blended(scored) == [("ok", 1.0, COOCCURRENCE, "a")]  # ok is its own source's best
    assert scored.by_source[COOCCURRENCE] == [("ok", 1.0)]


async def test_rows_are_read_only_depth_deep_and_titles_come_with_the_voters(
        redis: Redis, settings: Settings) -> None:
    keys = RedisKeys(settings.key_prefix)
    reader = await reader_with(redis, settings, {"a": {"x": 3, "y": 2, "z": 1}})
    await redis.hset(keys.item_meta("a"), mapping={"title": "Heat"})
    scored = await reader.scored([("a", 1.0, 0.0)], depth=2, similarity="count",
                                 weights=(1.0, 0.0, 0.0), top=5)
    assert [s.item_id for s in scored.blended] == ["x", "y"]
    assert scored.titles == {"a": "Heat"}


async def test_each_judged_weighting_gets_its_own_best_from_the_same_sums(
        redis: Redis, settings: Settings) -> None:
    reader = await reader_with(redis, settings, {"a": {"x": 2, "y": 1}},
                               {"a": {"y": 1, "z": 3}})
    weightings = [(1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (1.0, 1.0, 0.0), (1.0, 0.5, 0.0)]

    async def lists(exclude: list[str]) -> list[list[str]]:
        return (await reader.scored([("a", 1.0, 1.0)], depth=10, similarity="count",
                                    weights=(1.0, 1.0, 0.0), top=1, weightings=weightings,
                                    per_weighting=3, exclude=exclude)).by_weighting

    # scaled: co-occurrence x 2/2, y 1/2; sequence y 1/3, z 3/3
    # 1:1 -> x 1, z 1 (tie: smaller id first), y 0.5 + 1/3; 1:0.5 -> x 1, y 0.5 + 1/6, z 0.5
    assert await lists([]) == [["x", "y"], ["z", "y"], ["x", "z", "y"], ["x", "y", "z"]]
    # an excluded item is never chosen, but still sets its source's scale
    assert await lists(["x"]) == [["y"], ["z", "y"], ["z", "y"], ["y", "z"]]
