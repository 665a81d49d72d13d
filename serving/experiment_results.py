"""What an experiment's counts say: per variant its rates with 95% intervals, each variant
against the control with a test that stays valid however often it is looked at, and whether
the split itself is broken. Pure functions over the counters the worker keeps
(`experiment:{name}:metrics`); the offline simulations in the tests call the same ones.

- **CTR** (clicks / items shown) is a ratio of two sums over users, and the *user* is the unit
  of randomisation, so its variance is the delta method's over users' (clicks, items shown)
  pairs (Deng et al. 2018, "Applying the Delta Method in Metric Analytics"):
  Var(R) ≈ (s_xx − 2R·s_xy + R²·s_yy) / (n·ȳ²). Treating every item shown as an independent
  trial would understate it for users who click much more than others.
- **Conversion** (users with an attributed purchase / users) has a Wilson interval.
- **Comparison**: mSPRT (Johari, Pekelis and Walsh 2017, "Always Valid Inference") on
  θ = ln(CTR_variant / CTR_control), estimated with variance V = Var_v/R_v² + Var_c/R_c², with
  a normal mixture N(0, τ²) over θ (τ = `MIXTURE_SD`, lifts of about 10%):
  Λ = √(V/(V+τ²)) · exp(θ̂²τ² / (2V(V+τ²))); the always-valid p-value is min(1, 1/Λ), and
  {θ₀ : Λ(θ₀) < 1/α} is a confidence sequence, so neither inflates its error when the results
  are read every day (Ville's inequality). Looked at once, it is more conservative than a
  z-test: the price of peeking freely.
- **Sample-ratio mismatch**: a chi-square test of users per variant against the planned shares,
  flagged below p = 0.001 (a broken split, not bad luck: then trust no comparison).
- **Interleaving**: the lists where one variant's items got more clicks than the other's;
  the share each variant won, with the exact two-sided binomial test against 1/2 (for a
  single look) and the mSPRT on that share (`significant` is decided by the latter).
"""

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from pydantic import BaseModel, Field

from streamrec.contract import ExperimentRecord

#: Two-sided 95%.
Z_95 = 1.959963984540054
ALPHA = 0.05
#: Standard deviation of the mSPRT's mixture over the log CTR ratio: the test is most
#: powerful near lifts of this size (0.1: about 10%).
MIXTURE_SD = 0.1
#: The same for an interleaving preference share's distance from 1/2.
PREFERENCE_MIXTURE_SD = 0.05
#: Below this p-value the split is flagged as broken.
SAMPLE_RATIO_ALPHA = 0.001
#: A variant needs this many users before its CTR is compared (the delta method's normal
#: approximation needs some).
MIN_USERS_TO_COMPARE = 30

METHOD = ("CTR intervals: delta method over users (95%); comparisons: mSPRT, normal mixture "
          f"over the log CTR ratio (tau {MIXTURE_SD}), always-valid p-values and confidence "
          f"sequences at alpha {ALPHA}; sample ratio: chi-square against the planned shares, "
          f"flagged below p {SAMPLE_RATIO_ALPHA}; interleaving: exact binomial test of the "
          f"preference share (one look) and mSPRT on it (tau {PREFERENCE_MIXTURE_SD}), which "
          "decides `significant`")


@dataclass(frozen=True, slots=True)
class VariantCounts:
    """One variant's counters, as the worker keeps them."""

    users: int = 0
    lists: int = 0
    items_shown: int = 0
    clicks: int = 0
    add_to_carts: int = 0
    purchases: int = 0
    converted_users: int = 0
    preferred_lists: int = 0
    items_shown_squares: int = 0  # Σ over users of (items shown)²
    click_squares: int = 0  # Σ clicks²
    clicks_by_items_shown: int = 0  # Σ clicks · items shown

    @classmethod
    def from_counters(cls, counters: Mapping[str, int]) -> "VariantCounts":
        """From the hash fields of one variant (event types by their names)."""
        renamed = {"click": "clicks", "add_to_cart": "add_to_carts", "purchase": "purchases"}
        fields = {renamed.get(name, name): value for name, value in counters.items()}
        return cls(**{name: fields.get(name, 0) for name in cls.__dataclass_fields__})


@dataclass(frozen=True, slots=True)
class Estimate:
    value: float
    variance: float

    def interval(self, z: float = Z_95) -> tuple[float, float]:
        half = z * math.sqrt(self.variance)
        return self.value - half, self.value + half


def ctr(counts: VariantCounts) -> Estimate | None:
    """Clicks per item shown, its variance by the delta method over users; None with fewer
    than two users or nothing shown."""
    n = counts.users
    if n < 2 or counts.items_shown == 0:
        return None
    mean_clicks, mean_shown = counts.clicks / n, counts.items_shown / n
    ratio = mean_clicks / mean_shown
    s_xx = (counts.click_squares - n * mean_clicks**2) / (n - 1)
    s_yy = (counts.items_shown_squares - n * mean_shown**2) / (n - 1)
    s_xy = (counts.clicks_by_items_shown - n * mean_clicks * mean_shown) / (n - 1)
    variance = (s_xx - 2 * ratio * s_xy + ratio**2 * s_yy) / (n * mean_shown**2)
    return Estimate(ratio, max(variance, 0.0))


def wilson_interval(successes: int, trials: int, z: float = Z_95) -> tuple[float, float]:
    share = successes / trials
    spread = z * math.sqrt(share * (1 - share) / trials + z * z / (4 * trials * trials))
    centre = share + z * z / (2 * trials)
    scale = 1 + z * z / trials
    return max(0.0, (centre - spread) / scale), min(1.0, (centre + spread) / scale)


@dataclass(frozen=True, slots=True)
class SequentialTest:
    estimate: float  # θ̂
    p_value: float  # always valid
    interval: tuple[float, float]  # confidence sequence at ALPHA


def msprt(estimate: float, variance: float, mixture_sd: float, alpha: float = ALPHA
          ) -> SequentialTest:
    """The normal-mixture mSPRT of θ = 0 for an asymptotically normal θ̂ with `variance`."""
    tau2 = mixture_sd**2
    log_likelihood_ratio = (0.5 * math.log(variance / (variance + tau2))
                            + estimate**2 * tau2 / (2 * variance * (variance + tau2)))
    half = math.sqrt(variance * (variance + tau2) / tau2
                     * (2 * math.log(1 / alpha) + math.log((variance + tau2) / variance)))
    return SequentialTest(estimate, math.exp(min(0.0, -log_likelihood_ratio)),
                          (estimate - half, estimate + half))


def chi_square_survival(statistic: float, degrees: int) -> float:
    """P(χ²_degrees ≥ statistic), in closed form for whole degrees of freedom."""
    half = statistic / 2
    if degrees % 2 == 0:
        terms, total = degrees // 2, 0.0
        for k in range(terms):
            total += math.exp(k * math.log(half) - math.lgamma(k + 1)) if half else float(k == 0)
        return min(1.0, math.exp(-half) * total)
    total = math.erfc(math.sqrt(half))
    for k in range(degrees // 2):
        if half:
            total += math.exp(-half + (k + 0.5) * math.log(half) - math.lgamma(k + 1.5))
    return min(1.0, total)


def binomial_two_sided(successes: int, trials: int) -> float:
    """Exact two-sided p-value of `successes` in `trials` against a share of 1/2."""
    fewer = min(successes, trials - successes)
    tail = sum(math.exp(math.lgamma(trials + 1) - math.lgamma(i + 1) - math.lgamma(trials - i + 1)
                        - trials * math.log(2)) for i in range(fewer + 1))
    return min(1.0, 2 * tail)


class VariantResult(BaseModel):
    users: int = Field(description="Users served at least one list of the variant.")
    lists: int
    impressions: int = Field(description="Items shown in those lists.")
    clicks: int
    add_to_carts: int
    purchases: int
    ctr: float | None = Field(description="Clicks per item shown.")
    ctr_ci: tuple[float, float] | None = Field(description="95%, delta method over users.")
    conversion: float | None = Field(description="Users with an attributed purchase, per user.")
    conversion_ci: tuple[float, float] | None = Field(description="95%, Wilson.")
    preferred_lists: int | None = Field(
        None, description="Interleaving: lists whose clicks favoured this variant's items.")


class Comparison(BaseModel):
    variant: str
    against: str = Field(description="The control (the experiment's first variant).")
    metric: str = "ctr"
    lift: float | None = Field(description="CTR of the variant / CTR of the control − 1.")
    ci: tuple[float, float] | None = Field(
        description="Confidence sequence of the lift: valid at every look.")
    p_value: float | None = Field(description="Always-valid p-value (mSPRT).")
    significant: bool


class SampleRatioMismatch(BaseModel):
    observed: dict[str, int]
    expected: dict[str, float]
    chi_square: float | None
    p_value: float | None
    flagged: bool


class Preference(BaseModel):
    """Interleaving: which variant's items the users' clicks preferred, list by list."""

    variant: str
    against: str
    lists_preferring_variant: int
    lists_preferring_against: int
    share: float | None = Field(description="Of the lists with a preference, the variant's.")
    binomial_p_value: float | None = Field(description="Exact, two-sided, for one look.")
    p_value: float | None = Field(description="Always-valid p-value (mSPRT on the share).")
    significant: bool


class ExperimentResults(BaseModel):
    name: str
    mode: str
    running: bool
    variants: dict[str, VariantResult]
    comparisons: list[Comparison]
    interleaving: Preference | None
    sample_ratio_mismatch: SampleRatioMismatch | None
    method: str = METHOD


def _variant_result(counts: VariantCounts, interleaved: bool) -> VariantResult:
    rate = ctr(counts)
    return VariantResult(
        users=counts.users, lists=counts.lists, impressions=counts.items_shown,
        clicks=counts.clicks, add_to_carts=counts.add_to_carts, purchases=counts.purchases,
        ctr=counts.clicks / counts.items_shown if counts.items_shown else None,
        ctr_ci=None if rate is None or interleaved else rate.interval(),
        conversion=counts.converted_users / counts.users
        if counts.users and not interleaved else None,
        conversion_ci=wilson_interval(counts.converted_users, counts.users)
        if counts.users and not interleaved else None,
        preferred_lists=counts.preferred_lists if interleaved else None,
    )


def compare(variant: str, counts: VariantCounts, control: str, control_counts: VariantCounts
            ) -> Comparison:
    """The variant's CTR against the control's: lift, confidence sequence, mSPRT p-value."""
    mine, theirs = ctr(counts), ctr(control_counts)
    if (mine is None or theirs is None or not mine.value or not theirs.value
            or min(counts.users, control_counts.users) < MIN_USERS_TO_COMPARE):
        return Comparison(variant=variant, against=control, lift=None, ci=None, p_value=None,
                          significant=False)
    variance = mine.variance / mine.value**2 + theirs.variance / theirs.value**2
    test = msprt(math.log(mine.value / theirs.value), variance, MIXTURE_SD)
    low, high = test.interval
    return Comparison(variant=variant, against=control, lift=math.expm1(test.estimate),
                      ci=(math.expm1(low), math.expm1(high)), p_value=test.p_value,
                      significant=test.p_value < ALPHA)


def sample_ratio_mismatch(users: Mapping[str, int], shares: Mapping[str, float]
                          ) -> SampleRatioMismatch:
    total_share, total_users = sum(shares.values()), sum(users.values())
    expected = {name: total_users * share / total_share for name, share in shares.items()}
    if not total_users:
        return SampleRatioMismatch(observed=dict(users), expected=expected, chi_square=None,
                                   p_value=None, flagged=False)
    statistic = sum((users[name] - expected[name])**2 / expected[name] for name in shares)
    p_value = chi_square_survival(statistic, len(shares) - 1)
    return SampleRatioMismatch(observed=dict(users), expected=expected, chi_square=statistic,
                               p_value=p_value, flagged=p_value < SAMPLE_RATIO_ALPHA)


def preference(variant: str, wins: int, control: str, control_wins: int) -> Preference:
    decided = wins + control_wins
    if not decided:
        return Preference(variant=variant, against=control, lists_preferring_variant=0,
                          lists_preferring_against=0, share=None, binomial_p_value=None,
                          p_value=None, significant=False)
    share = wins / decided
    # Var(share) under the null (1/2) is 1/(4·decided): the test is of the null itself.
    test = msprt(share - 0.5, 0.25 / decided, PREFERENCE_MIXTURE_SD)
    return Preference(variant=variant, against=control, lists_preferring_variant=wins,
                      lists_preferring_against=control_wins, share=share,
                      binomial_p_value=binomial_two_sided(wins, decided),
                      p_value=test.p_value, significant=test.p_value < ALPHA)


def analyse(experiment: ExperimentRecord, counts: Mapping[str, VariantCounts], now_ms: int
            ) -> ExperimentResults:
    """The results of `experiment` from its variants' counters."""
    names: Sequence[str] = [variant.name for variant in experiment.variants]
    of = {name: counts.get(name, VariantCounts()) for name in names}
    control, others = names[0], names[1:]
    interleaved = experiment.mode == "interleave"
    return ExperimentResults(
        name=experiment.name, mode=experiment.mode, running=experiment.running(now_ms),
        variants={name: _variant_result(of[name], interleaved) for name in names},
        comparisons=[] if interleaved else [compare(name, of[name], control, of[control])
                                            for name in others],
        interleaving=preference(others[0], of[others[0]].preferred_lists, control,
                                of[control].preferred_lists) if interleaved else None,
        sample_ratio_mismatch=None if interleaved else sample_ratio_mismatch(
            {name: of[name].users for name in names},
            {variant.name: variant.share for variant in experiment.variants}),
    )
