"""The pure math: decay, similarity, votes and scores, on numbers worked out by hand."""

import pytest

from serving.scoring import (
    Vote,
    because_you,
    recency_votes,
    score_candidates,
    similarity,
    top_n,
)
from streamrec.contract import DAY_MS, forward_decayed, half_life_ms, value_at

ANCHOR = 1_704_067_200_000
HALF_LIFE = half_life_ms(30)


def test_forward_decay_stores_weight_scaled_to_the_anchor() -> None:
    assert forward_decayed(2.0, ANCHOR, ANCHOR, HALF_LIFE) == 2.0
    assert forward_decayed(2.0, ANCHOR + 30 * DAY_MS, ANCHOR, HALF_LIFE) == 4.0
    assert forward_decayed(2.0, ANCHOR - 60 * DAY_MS, ANCHOR, HALF_LIFE) == 0.5


def test_reading_a_forward_decayed_sum_gives_the_exponentially_decayed_sum() -> None:
    # 3 at day 0 and 1 at day 30, read at day 60: 3/4 + 1/2 = 1.25
    stored = (forward_decayed(3.0, ANCHOR, ANCHOR, HALF_LIFE)
              + forward_decayed(1.0, ANCHOR + 30 * DAY_MS, ANCHOR, HALF_LIFE))
    assert value_at(stored, ANCHOR + 60 * DAY_MS, ANCHOR, HALF_LIFE) == pytest.approx(1.25)


def test_similarities_match_their_formulas() -> None:
    assert similarity("count", 3, 4, 9) == 3
    assert similarity("cosine", 3, 4, 9) == pytest.approx(3 / 6)
    assert similarity("jaccard", 3, 4, 9) == pytest.approx(3 / 10)
    assert similarity("cosine", 3, 0, 9) == 0.0
    assert similarity("jaccard", 0, 0, 0) == 0.0


def test_votes_decay_with_age_and_scale_with_event_weight() -> None:
    votes = recency_votes([("a", "purchase"), ("b", "view"), ("c", "click")],
                          {"view": 1.0, "click": 2.0, "purchase": 8.0}, decay=0.5)
    assert [(v.item_id, v.weight) for v in votes] == [("a", 8.0), ("b", 0.5), ("c", 0.5)]


def test_scores_sum_weighted_similarities_and_name_the_biggest_contributor() -> None:
    votes = [Vote("a", "view", 1.0), Vote("b", "view", 0.5)]
    rows = {"a": [("x", 2.0), ("y", 1.0)], "b": [("x", 4.0)]}
    counts = {"a": 4.0, "b": 16.0, "x": 4.0, "y": 1.0}
    scored = score_candidates(votes, rows, counts, "cosine")
    # x: 1.0 * 2/sqrt(4*4) + 0.5 * 4/sqrt(16*4) = 0.5 + 0.25; y: 1.0 * 1/sqrt(4*1) = 0.5
    assert scored["x"].score == pytest.approx(0.75)
    assert scored["y"].score == pytest.approx(0.5)
    assert scored["x"].because_of == "a"
    assert [s.item_id for s in top_n(scored, 1)] == ["x"]


def test_top_n_breaks_ties_by_item_id() -> None:
    scored = score_candidates([Vote("a", "view", 1.0)], {"a": [("z", 1.0), ("m", 1.0)]},
                              {"a": 1.0, "z": 1.0, "m": 1.0}, "count")
    assert [s.item_id for s in top_n(scored, 2)] == ["m", "z"]


def test_reasons_read_naturally() -> None:
    assert because_you("add_to_cart", "Red shoes") == "because you added Red shoes to your cart"
    assert because_you("play", "Song") == "because you interacted with Song"
