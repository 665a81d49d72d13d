"""The pure math: decay, votes and reasons, on numbers worked out by hand (the scores
themselves are summed in Redis: tests/integration/test_scoring.py)."""

import pytest
from pydantic import ValidationError

from serving.scoring import (
    BlendEvidence,
    because_you,
    leading_weighting,
    recency_votes,
    same_session,
    session_factors,
    weighting_label,
)
from streamrec.contract import DAY_MS, Settings, forward_decayed, half_life_ms, value_at
from tests.support.sessions import GAP_MINUTES, SESSION_CASES, SessionCase

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


def test_votes_decay_with_age_and_scale_with_event_weight() -> None:
    votes = recency_votes([("a", "purchase"), ("b", "view"), ("c", "click")],
                          {"view": 1.0, "click": 2.0, "purchase": 8.0}, decay=0.5)
    assert [(v.item_id, v.weight) for v in votes] == [("a", 8.0), ("b", 0.5), ("c", 0.5)]


MINUTE = 60_000
GAP = 30 * MINUTE


def test_a_request_that_continues_a_session_keeps_its_votes_and_lowers_earlier_ones() -> None:
    # newest first: 10:00 and 9:40 are one session (20 min apart); 8:00 is an earlier one,
    # and so is 7:50 though it is close to 8:00 (a session is what leads up to the newest)
    times = [600 * MINUTE, 580 * MINUTE, 480 * MINUTE, 470 * MINUTE]
    assert session_factors(times, 610 * MINUTE, GAP, 0.3) == [1.0, 1.0, 0.3, 0.3]
    assert session_factors(times, 630 * MINUTE, GAP, 0.3) == [1.0, 1.0, 0.3, 0.3]  # at the edge
    votes = recency_votes([("a", "view"), ("b", "view"), ("c", "view")], {}, decay=0.5,
                          factors=session_factors(times[:3], 610 * MINUTE, GAP, 0.3))
    assert [v.weight for v in votes] == [1.0, 0.5, 0.25 * 0.3]


def test_a_request_that_starts_a_session_votes_by_recency_alone() -> None:
    times = [600 * MINUTE, 480 * MINUTE]
    assert session_factors(times, 631 * MINUTE, GAP, 0.3) == []
    assert session_factors([], 600 * MINUTE, GAP, 0.3) == []
    votes = recency_votes([("a", "view"), ("b", "view")], {}, decay=0.5,
                          factors=session_factors(times, 631 * MINUTE, GAP, 0.3))
    assert [v.weight for v in votes] == [1.0, 0.5]


@pytest.mark.parametrize("case", SESSION_CASES, ids=lambda case: case.name)
def test_a_session_is_a_chain_of_items_within_the_gap(case: SessionCase) -> None:
    assert same_session([t * MINUTE for t in case.times], case.at * MINUTE,
                        GAP_MINUTES * MINUTE) == case.inside


def test_reasons_read_naturally() -> None:
    assert because_you("add_to_cart", "Red shoes") == "because you added Red shoes to your cart"
    assert because_you("play", "Song") == "because you interacted with Song"
    assert because_you("view", "Heat", "sequence") == "often next after Heat"
    assert because_you("view", "Heat", "neighbours") == "liked by others who liked Heat"


def test_the_configured_weighting_serves_until_enough_lists_are_judged() -> None:
    weightings = [(1.0, 1.0, 0.0), (1.0, 0.0, 0.0), (0.0, 1.0, 0.5)]
    evidence = BlendEvidence(trials=199.9, hits={"1:1": 10.0, "1:0": 30.0, "0:1:0.5": 20.0})
    assert leading_weighting(weightings, evidence, trials_before_switch=200) == (1.0, 1.0, 0.0)
    evidence = BlendEvidence(trials=200.0, hits={"1:1": 10.0, "1:0": 30.0, "0:1:0.5": 20.0})
    assert leading_weighting(weightings, evidence, trials_before_switch=200) == (1.0, 0.0, 0.0)
    evidence = BlendEvidence(trials=200.0, hits={"1:1": 10.0, "1:0": 30.0, "0:1:0.5": 31.0})
    assert leading_weighting(weightings, evidence, trials_before_switch=200) == (0.0, 1.0, 0.5)


def test_a_tie_keeps_the_earlier_weighting_and_a_never_judged_one_has_no_hits() -> None:
    weightings = [(1.0, 1.0, 0.0), (1.0, 0.5, 0.0), (0.0, 1.0, 0.0)]
    evidence = BlendEvidence(trials=500.0, hits={"1:1": 30.0, "1:0.5": 30.0})
    assert leading_weighting(weightings, evidence, trials_before_switch=200) == (1.0, 1.0, 0.0)


def test_a_weighting_without_neighbours_keeps_its_label_from_before_them() -> None:
    assert weighting_label((1.0, 0.5, 0.0)) == "1:0.5"
    assert weighting_label((1.0, 0.5, 0.25)) == "1:0.5:0.25"


def test_the_configured_weights_are_judged_first_and_once() -> None:
    assert Settings(cooccurrence_weight=1, sequence_weight=0.5).weightings == [
        (1.0, 0.5, 0.0), (1.0, 0.0, 0.0), (1.0, 1.0, 0.0), (0.5, 1.0, 0.0), (0.0, 1.0, 0.0),
        (1.0, 0.5, 0.5), (1.0, 1.0, 0.5), (1.0, 0.5, 1.0), (1.0, 1.0, 1.0)]
    assert Settings(sequence_weight=2, neighbours_weight=0.5, blend_weightings=[]
                    ).weightings == [(1.0, 2.0, 0.5)]


def test_weighting_pairs_as_given_before_neighbours_weigh_them_zero() -> None:
    assert Settings(blend_weightings=[(1, 0), (0, 1, 0.5)]).blend_weightings == [
        (1.0, 0.0, 0.0), (0.0, 1.0, 0.5)]
    with pytest.raises(ValidationError):
        Settings(blend_weightings=[(1,)])


@pytest.mark.parametrize("setting", [{"item_users_kept": 1001}, {"neighbour_count": 201},
                                     {"neighbour_support": 201}])
def test_the_neighbours_work_per_list_is_bounded(setting: dict[str, int]) -> None:
    with pytest.raises(ValidationError):
        Settings(**setting)
