"""Re-ranking: the impression penalty and the per-category cap, exactly."""

import pytest
from redis.asyncio import Redis

from serving.reranking import cap_per_category, penalise_shown
from serving.scoring import ScoredItem
from stream_app.state_writer import StateWriter, StreamRecord
from streamrec.contract import ImpressionEvent

from .conftest import Servers
from .test_recommender import NOW, listed, recommender


def ranked(*scores: tuple[str, float]) -> list[ScoredItem]:
    return [ScoredItem(item, score, None) for item, score in scores]


def test_items_passed_over_lose_a_factor_per_extra_showing() -> None:
    result = penalise_shown(ranked(("a", 1.0), ("b", 0.9), ("c", 0.5)),
                            {"a": 4, "b": 2}, free=2, penalty=0.5)
    # a: shown 4 times, 2 beyond the free 2 -> 1.0 * 0.5^2; b: within the free showings.
    assert [(s.item_id, s.score) for s in result] == [("b", 0.9), ("c", 0.5), ("a", 0.25)]


def test_category_cap_skips_items_of_full_categories() -> None:
    items = ranked(("a", 5), ("b", 4), ("c", 3), ("d", 2), ("e", 1))
    primary = {"a": "shoes", "b": "shoes", "c": "shoes", "d": None, "e": "hats"}
    assert [s.item_id for s in cap_per_category(items, primary, cap=2, n=3)] == [
        "a", "b", "d"]
    assert [s.item_id for s in cap_per_category(items, primary, cap=1, n=4)] == [
        "a", "d", "e"]  # only 3 pass the cap: the caller tops up


async def test_the_service_penalises_what_a_user_keeps_ignoring(redis: Redis, servers: Servers
                                                                ) -> None:
    rec = await recommender(redis, servers, impression_penalty=0.1,
                            impressions_before_penalty=1)
    assert listed((await rec.for_user("me", 2, now_ms=NOW)).items)[0] == ("c", "co-occurrence")
    shown = [StreamRecord("events:1", k, ImpressionEvent(
        event_id=f"i{k}", user_id="me", event_type="impression", item_ids=["c"],
        timestamp=NOW, recommender="personalised")) for k in range(3)]
    await StateWriter(redis, rec.settings).apply(shown)
    served = await rec.for_user("me", 2, now_ms=NOW)
    # c shown 3 times, 2 beyond the free one: 8*2/sqrt(8) * 0.1^2 < d's 0.5/sqrt(3).
    assert listed(served.items) == [("d", "co-occurrence"), ("c", "co-occurrence")]
    assert served.items[1].score == pytest.approx(1.0 * 0.01)  # the best, penalised twice


async def test_max_per_category_diversifies_a_personalised_list(redis: Redis, servers: Servers
                                                                ) -> None:
    rec = await recommender(redis, servers)
    # c and d are both hats: a cap of 1 keeps c and tops up with trending instead of d.
    capped = await rec.for_user("me", 2, now_ms=NOW, max_per_category=1)
    assert listed(capped.items) == [("c", "co-occurrence"), ("e", "trending")]
    assert listed((await rec.for_user("me", 2, now_ms=NOW)).items) == [
        ("c", "co-occurrence"), ("d", "co-occurrence")]
