"""Experiments without servers: what a definition may say, who gets which variant, team
draft, and the statistics against hand-worked numbers."""

import math
import random
from collections import Counter

import pytest
from pydantic import ValidationError

from serving.experiment_results import (
    VariantCounts,
    binomial_two_sided,
    chi_square_survival,
    ctr,
    msprt,
    preference,
    sample_ratio_mismatch,
    wilson_interval,
)
from serving.experiments import team_draft
from streamrec.contract import Experiment, ImpressionEvent, assign
from streamrec.contract.experiments import ExperimentRecord, stored

TWO = [{"name": "control", "share": 0.5}, {"name": "treatment", "share": 0.5}]


def experiment(**changes: object) -> Experiment:
    return Experiment(**{"name": "exp", "variants": TWO, **changes})


@pytest.mark.parametrize(("overrides", "message"), [
    ({"redis_url": "redis://elsewhere"}, "redis_url: not a recommendation setting"),
    ({"auth": "disabled"}, "auth: not a recommendation setting"),
    ({"rate_limit_per_second": 1e9}, "rate_limit_per_second: not a recommendation setting"),
    ({"impression_penalty": 2}, "less than or equal to 1"),
    ({"similarity": "euclid"}, "'cosine', 'jaccard' or 'count'"),
    ({"similarity_alpha": 1.5}, "less than or equal to 1"),
    ({"sequence_weight": None}, "valid number"),
    ({"sequence_weight": float("inf")}, "finite number"),
    ({"earlier_session_vote": float("nan")}, "finite number"),
    ({"recommender": "popular"}, "'personalised' or 'trending'"),
])
def test_a_variant_may_override_recommendation_settings_only(overrides: dict, message: str
                                                             ) -> None:
    with pytest.raises(ValidationError, match=message):
        experiment(variants=[TWO[0], {**TWO[1], "settings": overrides}])


def test_a_variant_names_what_it_changes_and_nothing_else() -> None:
    variant = experiment(variants=[TWO[0], {**TWO[1], "settings": {
        "sequence_weight": 2, "max_per_category": None, "recommender": "trending"}}]).variants[1]
    assert variant.settings.overrides() == {"sequence_weight": 2.0, "max_per_category": None}
    assert variant.model_dump()["settings"] == {"recommender": "trending",
                                                "sequence_weight": 2.0, "max_per_category": None}


def test_a_variant_stored_with_weighting_pairs_still_loads_weighing_no_neighbours() -> None:
    """Pairs were the blend's weightings before the neighbours source: an experiment stored
    then is read on every personalised request, so it must still load."""
    variants = [TWO[0], {**TWO[1], "settings": {"blend_weightings": [[1, 0], [0, 1]]}}]
    record = ExperimentRecord.model_validate_json(
        stored(experiment(variants=variants), now_ms=1_700_000_000_000).model_dump_json())
    assert record.variants[1].settings.overrides() == {
        "blend_weightings": [(1.0, 0.0, 0.0), (0.0, 1.0, 0.0)]}


@pytest.mark.parametrize(("changes", "message"), [
    ({"variants": [TWO[0], {**TWO[1], "share": 0.6}]}, "shares must add up to 1"),
    ({"variants": [TWO[0], {**TWO[0]}]}, "variant names must differ"),
    ({"variants": [*TWO, {"name": "third", "share": 0.2}], "mode": "interleave"},
     "exactly two variants"),
    ({"start": "2026-01-02T00:00:00Z", "end": "2026-01-01T00:00:00Z"}, "end must be after"),
    ({"holdout": 1.0}, "less than 1"),
])
def test_an_experiment_must_be_consistent(changes: dict, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        experiment(**changes)


def test_an_impression_names_its_variant_or_each_items() -> None:
    base = {"event_id": "e", "user_id": "u", "event_type": "impression", "item_ids": ["a", "b"],
            "timestamp": 1_764_000_000_000, "recommendation_id": "r"}
    ImpressionEvent(**base, experiment="exp", variant="a")
    ImpressionEvent(**base, experiment="exp", item_variants=["a", "b"])
    for wrong in ({"variant": "a"}, {"experiment": "exp"},
                  {"experiment": "exp", "variant": "a", "item_variants": ["a", "b"]},
                  {"experiment": "exp", "item_variants": ["a"]}):
        with pytest.raises(ValidationError):
            ImpressionEvent(**base, **wrong)


def test_assignment_is_stable_follows_the_shares_and_keeps_the_holdout_out() -> None:
    planned = experiment(variants=[{"name": "a", "share": 0.2}, {"name": "b", "share": 0.8}],
                         holdout=0.5)
    users = [f"user-{k}" for k in range(20_000)]
    counts = Counter(assign(planned, user) for user in users)
    assert counts[None] == pytest.approx(10_000, abs=300)  # 4 standard deviations
    assert counts["a"] == pytest.approx(2_000, abs=200)
    assert counts["b"] == pytest.approx(8_000, abs=300)
    assert [assign(planned, user) for user in users[:100]] == [
        assign(planned, user) for user in users[:100]]
    # Another experiment splits the same users independently of this one.
    other = experiment(name="other")
    together = Counter((assign(planned, u), assign(other, u)) for u in users)
    assert together["a", "control"] == pytest.approx(1_000, abs=150)


def test_team_draft_alternates_and_never_repeats_an_item() -> None:
    left, right = ["a", "b", "c", "d"], ["b", "e", "a", "f"]
    merged = team_draft([left, right], 4, random.Random(1))
    assert len({item for item, _ in merged}) == 4
    assert Counter(team for _, team in merged) == {0: 2, 1: 2}
    for item, team in merged:  # each pick is the team's best item not already taken
        ranking = [left, right][team]
        before = merged[:merged.index((item, team))]
        assert item == next(i for i in ranking if i not in {b for b, _ in before})
    # One ranking used up: the other fills the list.
    assert [item for item, _ in team_draft([["a"], ["b", "c", "d"]], 4, random.Random(2))
            ][-2:] == ["c", "d"]


def test_ctr_variance_is_the_delta_method_over_users() -> None:
    # Users (clicks, items shown): (1, 10), (3, 10), (0, 20); R = 4/40. The residuals
    # x - R·y are 0, 2, -2: sample variance 4; Var(R) = 4 / (3 · (40/3)²) = 0.0075.
    counts = VariantCounts(users=3, items_shown=40, clicks=4, click_squares=1 + 9,
                           items_shown_squares=100 + 100 + 400, clicks_by_items_shown=10 + 30)
    estimate = ctr(counts)
    assert estimate.value == pytest.approx(0.1)
    assert estimate.variance == pytest.approx(0.0075)
    half = 1.959964 * math.sqrt(0.0075)
    assert estimate.interval() == pytest.approx((0.1 - half, 0.1 + half))


def test_msprt_p_value_and_confidence_sequence() -> None:
    # θ̂ 0.3, V 0.01, τ² 0.01: log Λ = ½·ln(1/2) + 0.09·0.01 / (2·0.01·0.02) = 1.90343;
    # half-width √(0.01·0.02/0.01 · (2·ln 20 + ln 2)) = 0.365639.
    test = msprt(0.3, 0.01, 0.1)
    assert test.p_value == pytest.approx(math.exp(-(0.5 * math.log(0.5) + 2.25)))
    assert test.interval == pytest.approx((0.3 - 0.365639, 0.3 + 0.365639), abs=1e-6)
    assert msprt(0.0, 0.01, 0.1).p_value == 1.0


@pytest.mark.parametrize(("statistic", "degrees"), [
    (3.841458820694124, 1), (5.991464547107979, 2), (7.814727903251178, 3),
    (9.487729036781154, 4)])
def test_chi_square_survival_at_the_5_percent_quantiles(statistic: float, degrees: int
                                                        ) -> None:
    assert chi_square_survival(statistic, degrees) == pytest.approx(0.05)


def test_binomial_and_wilson_against_hand_worked_values() -> None:
    assert binomial_two_sided(2, 10) == pytest.approx(2 * (1 + 10 + 45) / 1024)
    assert binomial_two_sided(5, 10) == 1.0
    assert wilson_interval(0, 10) == pytest.approx((0.0, 1.959964**2 / (10 + 1.959964**2)))
    assert wilson_interval(5, 10) == pytest.approx((0.236593, 0.763407), abs=1e-6)


def test_sample_ratio_mismatch_flags_a_broken_split_only() -> None:
    fair = sample_ratio_mismatch({"a": 5_040, "b": 4_960}, {"a": 0.5, "b": 0.5})
    assert fair.chi_square == pytest.approx(2 * 40**2 / 5_000)
    assert not fair.flagged
    assert sample_ratio_mismatch({"a": 5_200, "b": 4_800}, {"a": 0.5, "b": 0.5}).flagged


def test_interleaving_preference_is_tested_against_a_half() -> None:
    tied = preference("b", 50, "a", 50)
    assert (tied.share, tied.binomial_p_value, tied.significant) == (0.5, 1.0, False)
    clear = preference("b", 300, "a", 200)
    assert clear.share == 0.6 and clear.binomial_p_value < 1e-5 and clear.significant
