"""The results' statistics on simulated experiments, through the same code the endpoint
runs (`serving.experiment_results.compare` on the counters the worker keeps).

Each experiment: 10,000 users, split half and half, arriving evenly over 10 days; the
results are read at the end of every day (10 looks), and an experiment counts as declared
when any look says `significant`. A user is shown 1 + Poisson(19) items and clicks each with
their own probability, drawn from Beta(2, 38) (mean 5%, users differ); the treatment
multiplies it by 1 + lift.
"""

import math

import numpy as np
import pytest

from serving.experiment_results import ALPHA, VariantCounts, compare, ctr

EXPERIMENTS = 1_000
USERS = 10_000
LOOKS = 10


def counts(clicks: np.ndarray, shown: np.ndarray) -> VariantCounts:
    """What the worker's counters hold for these users."""
    return VariantCounts(
        users=len(shown), items_shown=int(shown.sum()), clicks=int(clicks.sum()),
        click_squares=int((clicks * clicks).sum()),
        items_shown_squares=int((shown * shown).sum()),
        clicks_by_items_shown=int((clicks * shown).sum()))


def naive_z_test(treatment: VariantCounts, control: VariantCounts) -> bool:
    """A fixed-horizon z-test of the same log ratio: valid for one look, not for ten."""
    mine, theirs = ctr(treatment), ctr(control)
    variance = mine.variance / mine.value**2 + theirs.variance / theirs.value**2
    return abs(math.log(mine.value / theirs.value)) / math.sqrt(variance) > 1.959964


def simulate(lift: float, seed: int) -> tuple[float, float, float]:
    """Share of experiments declared significant at any look by the mSPRT, by the naive
    z-test, and by the mSPRT with the treatment ahead."""
    rng = np.random.default_rng(seed)
    declared = naive = declared_better = 0
    for _ in range(EXPERIMENTS):
        treated = rng.random(USERS) < 0.5
        shown = 1 + rng.poisson(19, USERS)
        chance = rng.beta(2, 38, USERS) * np.where(treated, 1 + lift, 1.0)
        clicks = rng.binomial(shown, np.minimum(chance, 1.0))
        found = naive_found = better = False
        for look in range(1, LOOKS + 1):
            arrived = slice(0, USERS * look // LOOKS)
            group = treated[arrived]
            treatment = counts(clicks[arrived][group], shown[arrived][group])
            control = counts(clicks[arrived][~group], shown[arrived][~group])
            comparison = compare("treatment", treatment, "control", control)
            if comparison.significant:
                found = True
                better = better or comparison.lift > 0
            naive_found = naive_found or naive_z_test(treatment, control)
        declared += found
        naive += naive_found
        declared_better += better
    return declared / EXPERIMENTS, naive / EXPERIMENTS, declared_better / EXPERIMENTS


@pytest.fixture(scope="module")
def a_a() -> tuple[float, float, float]:
    return simulate(lift=0.0, seed=15)


def test_a_a_experiments_declare_a_winner_at_most_5_percent_of_the_time(
        a_a: tuple[float, float, float]) -> None:
    false_positives, _, _ = a_a
    print(f"A/A: {false_positives:.1%} of {EXPERIMENTS} experiments declared, looked at "
          f"{LOOKS} times")
    assert false_positives <= ALPHA


def test_the_simulation_catches_a_test_that_is_not_valid_under_peeking(
        a_a: tuple[float, float, float]) -> None:
    """The same ten looks with a fixed-horizon z-test: well above 5%, so the simulation can
    tell a valid test from an invalid one."""
    _, naive, _ = a_a
    print(f"A/A with a z-test at every look: {naive:.1%}")
    assert naive > 2 * ALPHA


def test_a_planted_10_percent_lift_is_found() -> None:
    _, _, power = simulate(lift=0.10, seed=16)
    print(f"10% lift: found (treatment ahead) in {power:.1%} of {EXPERIMENTS} experiments")
    assert power >= 0.8
