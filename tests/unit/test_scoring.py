"""The pure math: decay, similarity, votes and scores, on numbers worked out by hand."""

import pytest

from serving.scoring import (
    SourceScores,
    Vote,
    because_you,
    blend,
    cooccurrence_scores,
    recency_votes,
    sequence_scores,
    similarity,
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
    scored = cooccurrence_scores(votes, rows, counts, "cosine")
    # x: 1.0 * 2/sqrt(4*4) + 0.5 * 4/sqrt(16*4) = 0.5 + 0.25; y: 1.0 * 1/sqrt(4*1) = 0.5
    assert scored.totals == pytest.approx({"x": 0.75, "y": 0.5})
    assert scored.best["x"] == (0.5, "a")
    assert [(s.item_id, s.because_of) for s in blend([(1.0, scored)], 1)] == [("x", "a")]


def test_sequence_scores_sum_votes_times_next_counts() -> None:
    votes = [Vote("a", "view", 1.0), Vote("b", "view", 0.5)]
    scored = sequence_scores(votes, {"a": [("x", 1.0)], "b": [("x", 0.5), ("z", 2.0)]})
    assert scored.totals == {"x": 1.25, "z": 1.0}
    assert scored.best == {"x": (1.0, "a"), "z": (1.0, "b")}


def test_blend_scales_each_source_to_its_best_then_weights_them() -> None:
    cooc = SourceScores.collect("co-occurrence", [("x", 4.0, "a"), ("y", 2.0, "a")])
    seq = SourceScores.collect("sequence", [("y", 0.5, "b"), ("z", 0.25, "b")])
    ranked = blend([(1.0, cooc), (2.0, seq)], 3, exclude={"nothing"})
    # x: 4/4 = 1; y: 2/4 + 2 * 0.5/0.5 = 2.5 (sequence leads); z: 2 * 0.25/0.5 = 1
    assert [(s.item_id, s.score, s.source, s.because_of) for s in ranked] == [
        ("y", 2.5, "sequence", "b"), ("x", 1.0, "co-occurrence", "a"),
        ("z", 1.0, "sequence", "b")]
    assert [s.item_id for s in blend([(1.0, cooc), (0.0, seq)], 3, exclude={"x"})] == ["y"]


def test_blend_breaks_ties_by_item_id() -> None:
    scored = cooccurrence_scores([Vote("a", "view", 1.0)], {"a": [("z", 1.0), ("m", 1.0)]},
                                 {"a": 1.0, "z": 1.0, "m": 1.0}, "count")
    assert [s.item_id for s in blend([(1.0, scored)], 2)] == ["m", "z"]


def test_reasons_read_naturally() -> None:
    assert because_you("add_to_cart", "Red shoes") == "because you added Red shoes to your cart"
    assert because_you("play", "Song") == "because you interacted with Song"
    assert because_you("view", "Heat", "sequence") == "often next after Heat"
