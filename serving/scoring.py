"""Item-to-item scoring from streaming counts: the math, and the votes and reasons around it.
The sums themselves run in Redis, next to the rows (lua/score_candidates.lua), so that only
the best few candidates travel.

Notation (as in SAR and item-based CF): c_ij counts the users who interacted with items i
and j close together (within the pair window), each 1 when both were in one session and
`earlier_session_pair` when not (see `same_session`), n_i the number of users who
interacted with i (both forward-decayed when a half-life is set); next_ij sums 1/d over
users who went on to j d steps after i (d <= the sequence window).

Similarity of j to i:
    count    s_ij = c_ij
    cosine   s_ij = c_ij / (n_i^alpha * n_j^(1 - alpha))   (alpha 0.5: c_ij / sqrt(n_i n_j))
    jaccard  s_ij = c_ij / (n_i + n_j - c_ij)
The asymmetric cosine is Aiolli's (2013, "Efficient top-N recommendation for very large scale
binary rated datasets"): alpha above 0.5 moves it towards P(j | i) = c_ij / n_i, which
favours popular candidates; 1 - alpha is how much a candidate's popularity is held against it.

A user's recent items vote for candidates. The item of age a (0 = newest) votes with
v = decay^a (times weight(t), its latest event type's, with `votes_by_event_type`; times
`earlier_session_vote` when the request continues a session and the item is from an earlier
one: see `session_factors`), and

    score(j) = sum_i v_i * s_ij^q

over the user's `vote_items` most recent items (co-occurrence); q is Aiolli's locality
exponent (`similarity_exponent`, 1 by default): below 1, candidates that many recent items
agree on gain over one strong pair, above 1 the strongest pairs dominate. The sequence source scores
sum_i v'_i * next_ij over the `sequence_votes` newest items, v'_i = sequence_decay^a (times
weight(t) alike). The neighbours source (user-based, as in classic user-kNN, found through the
voters' users) weighs each user u' among the voters' newest users by sum of v_i over the voters
u' shares, over sqrt(how many items u' knows), and the `neighbour_count` heaviest add that
weight to every item of their recent history that at least `neighbour_support` of them have
(so that no one neighbour's history is shown as such). The blend scales each source to its best
candidate and adds them with weights. The item (and source) with the largest term is the
reason; for the neighbours, the voter most of them came through, and none when fewer than
`neighbour_support` did.

Self-tuning blend: every list served to a user also carries, per judged weighting w of the
three sources, the top `JUDGED_LIST_LENGTH` items w would have served (its shadow list), whatever
the length asked. The user's next new item judges them all on the same request, so no
traffic is spent exploring: the worker adds 1 to w's hits when w's list held the item, after
multiplying every count by 1 - 1/horizon, so hits_w estimates the recent hit rate of w's
shadow list times the (shared) decayed number of trials.
Once the trials reach a threshold the service serves the weighting with the most hits.
"""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Vote:
    item_id: str
    event_type: str
    weight: float


def recency_votes(
    recent: Sequence[tuple[str, str]], type_weights: Mapping[str, float], decay: float,
    factors: Sequence[float] = (),
) -> list[Vote]:
    """Votes of the user's recent (item, event type) pairs, newest first, each times its
    factor in `factors` (`session_factors`; 1 past its end); an event type missing from
    `type_weights` weighs 1."""
    return [
        Vote(item, event_type, decay**age * (factors[age] if age < len(factors) else 1.0)
             * type_weights.get(event_type, 1.0))
        for age, (item, event_type) in enumerate(recent)
    ]


def same_session(times_ms: Sequence[int], at_ms: int, gap_ms: float) -> list[bool]:
    """Which of the items at `times_ms` (newest first) share a session with the moment
    `at_ms`: those linked to it by a chain of items at most `gap_ms` apart, on either side of
    it in time. The one definition of a session (lua/apply_batch.lua applies it to a new
    event's pairs, where a late event sits between the items it came after)."""
    inside = [False] * len(times_ms)
    older = next((k for k, at in enumerate(times_ms) if at < at_ms), len(times_ms))
    for side in (range(older, len(times_ms)), range(older - 1, -1, -1)):
        linked, previous = True, at_ms
        for k in side:
            linked = linked and abs(previous - times_ms[k]) <= gap_ms
            inside[k], previous = linked, times_ms[k]
    return inside


def session_factors(times_ms: Sequence[int], now_ms: int, gap_ms: float, earlier: float
                    ) -> list[float]:
    """What each recent item's vote is multiplied by (times newest first): when the request
    continues a session (some item shares one with now), its items keep their votes and
    earlier sessions' get `earlier`: what a shopper does now says more than last week's
    visit. A request that starts a session changes nothing (votes by recency alone)."""
    inside = same_session(times_ms, now_ms, gap_ms)
    if not any(inside):
        return []
    return [1.0 if member else earlier for member in inside]


@dataclass(frozen=True, slots=True)
class ScoredItem:
    item_id: str
    score: float
    # the voting item that contributed most; for the neighbours', the one most of them came
    # through, and None when fewer than the support did (naming it would name a person's item)
    because_of: str | None
    source: str = "co-occurrence"  # the source that contributed most


#: The alpha of plain cosine, c_ij / sqrt(n_i * n_j): symmetric in i and j.
SYMMETRIC_ALPHA = 0.5

COOCCURRENCE = "co-occurrence"
SEQUENCE = "sequence"
#: The sources in the order lua/score_candidates.lua numbers them.
NEIGHBOURS = "neighbours"
SOURCES = (COOCCURRENCE, SEQUENCE, NEIGHBOURS)

REASONS = {
    "view": "because you viewed {}",
    "click": "because you clicked {}",
    "add_to_cart": "because you added {} to your cart",
    "purchase": "because you bought {}",
}


def because_you(event_type: str | None, item_label: str | None, source: str = COOCCURRENCE
                ) -> str:
    """An item's reason: its source's, naming the voting item (`item_label`) that gave it
    most; the neighbours' names none when too few of them share one (see `ScoredItem`)."""
    if source == SEQUENCE:
        return f"often next after {item_label}"
    if source == NEIGHBOURS:
        if item_label is None:
            return "liked by people who like what you like"
        return f"liked by others who liked {item_label}"
    return REASONS.get(event_type or "", "because you interacted with {}").format(item_label)


Weighting = tuple[float, float, float]  # (co-occurrence, sequence, neighbours) weights


def weighting_label(weighting: Weighting) -> str:
    """How a weighting is named in impressions and in the evidence: '1:0.5', or with the
    neighbours weighed '1:0.5:0.5' (a weighting without them keeps the label it had before
    there were neighbours, so evidence and signed lists from then still count)."""
    cooccurrence, sequence, neighbours = weighting
    label = f"{cooccurrence:g}:{sequence:g}"
    return f"{label}:{neighbours:g}" if neighbours else label


#: How many of its best items each judged weighting's shadow list holds: one measure (the
#: hit rate at this length) for requests of every length, and a long list pays for this many.
JUDGED_LIST_LENGTH = 10


@dataclass(frozen=True, slots=True)
class BlendEvidence:
    """Decayed counts of judged lists: the trials, and per weighting label the hits."""

    trials: float
    hits: Mapping[str, float]

    def hit_rates(self) -> dict[str, float]:
        """Per weighting label, the (decayed) share of judged lists that held the item."""
        return {label: hits / self.trials if self.trials else 0.0
                for label, hits in sorted(self.hits.items())}


def leading_weighting(weightings: Sequence[Weighting], evidence: BlendEvidence,
                      trials_before_switch: int) -> Weighting:
    """The first (configured) weighting until the trials reach `trials_before_switch`, then
    the one with the most hits (ties to the earlier one, the configured first)."""
    if evidence.trials < trials_before_switch:
        return weightings[0]
    return max(weightings, key=lambda w: evidence.hits.get(weighting_label(w), 0.0))
