"""Item-to-item scoring from streaming counts. Pure functions, no I/O.

Notation (as in SAR and item-based CF): c_ij is the number of users who interacted with
items i and j close together (within the pair window), n_i the number of users who
interacted with i (both forward-decayed when a half-life is set); next_ij sums 1/d over
users who went on to j d steps after i (d <= the sequence window).

Similarity of j to i:
    count    s_ij = c_ij
    cosine   s_ij = c_ij / sqrt(n_i * n_j)
    jaccard  s_ij = c_ij / (n_i + n_j - c_ij)

A user's recent items vote for candidates. The item of age a (0 = newest) whose latest event
had type t votes with v = decay^a * weight(t), and

    score(j) = sum_i v_i * s_ij

over the user's `vote_items` most recent items (co-occurrence). The sequence source scores
sum_i v'_i * next_ij over the `sequence_votes` newest items, v'_i = sequence_decay^a *
weight(t). `blend` scales each source to its best candidate and adds them with weights.
The item (and source) with the largest term is the reason.
"""

import heapq
import math
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass

from streamrec.contract import Similarity


def similarity(kind: Similarity, c_ij: float, n_i: float, n_j: float) -> float:
    if kind == "count":
        return c_ij
    if kind == "cosine":
        return c_ij / math.sqrt(n_i * n_j) if n_i > 0 and n_j > 0 else 0.0
    union = n_i + n_j - c_ij
    return c_ij / union if union > 0 else 0.0


@dataclass(frozen=True, slots=True)
class Vote:
    item_id: str
    event_type: str
    weight: float


def recency_votes(
    recent: Sequence[tuple[str, str]], event_weights: Mapping[str, float], decay: float
) -> list[Vote]:
    """Votes of the user's recent (item, event type) pairs, newest first."""
    return [
        Vote(item, event_type, decay**age * event_weights.get(event_type, 1.0))
        for age, (item, event_type) in enumerate(recent)
    ]


@dataclass(frozen=True, slots=True)
class ScoredItem:
    item_id: str
    score: float
    because_of: str | None  # the voting item that contributed most
    source: str = "co-occurrence"  # the source that contributed most


@dataclass(slots=True)
class SourceScores:
    """One candidate source's scores: totals and, per candidate, its biggest (term, voter)."""

    source: str
    totals: dict[str, float]
    best: dict[str, tuple[float, str]]

    @classmethod
    def collect(cls, source: str, terms: Iterable[tuple[str, float, str]]) -> "SourceScores":
        """From (candidate, term, voter) triples: score(j) = sum of j's terms."""
        totals: dict[str, float] = {}
        best: dict[str, tuple[float, str]] = {}
        for candidate, term, voter in terms:
            if candidate in totals:
                totals[candidate] += term
                if term > best[candidate][0]:
                    best[candidate] = (term, voter)
            else:
                totals[candidate] = term
                best[candidate] = (term, voter)
        return cls(source, totals, best)


def cooccurrence_scores(votes: Sequence[Vote], rows: Mapping[str, Sequence[tuple[str, float]]],
                        user_counts: Mapping[str, float], kind: Similarity) -> SourceScores:
    """score(j) = sum_i v_i * s_ij over the co-occurrence rows of the voting items."""
    def terms() -> Iterator[tuple[str, float, str]]:
        for vote in votes:
            n_i = user_counts.get(vote.item_id, 0.0)
            for candidate, c_ij in rows.get(vote.item_id, ()):
                yield (candidate, vote.weight * similarity(
                    kind, c_ij, n_i, user_counts.get(candidate, 0.0)), vote.item_id)

    return SourceScores.collect(COOCCURRENCE, terms())


def sequence_scores(votes: Sequence[Vote], next_rows: Mapping[str, Sequence[tuple[str, float]]]
                    ) -> SourceScores:
    """score(j) = sum_i v_i * next_ij: what users went on to after the newest items."""
    return SourceScores.collect(SEQUENCE, (
        (candidate, vote.weight * count, vote.item_id)
        for vote in votes for candidate, count in next_rows.get(vote.item_id, ())))


def blend(sources: Sequence[tuple[float, SourceScores]], n: int,
          exclude: Collection[str] = ()) -> list[ScoredItem]:
    """The top n of sum_s w_s * score_s(j) / max_j score_s(j): each source is scaled to its
    best candidate first, so weights compare like with like whatever a source's units. The
    reason comes from the source with the biggest weighted share. Ties by item id."""
    total: dict[str, float] = {}
    leading: dict[str, tuple[float, SourceScores]] = {}
    for weight, scores in sources:
        top = max(scores.totals.values(), default=0.0)
        if weight <= 0 or top <= 0:
            continue
        scale = weight / top
        for item, score in scores.totals.items():
            share = score * scale
            total[item] = total.get(item, 0.0) + share
            if item not in leading or share > leading[item][0]:
                leading[item] = (share, scores)
    chosen = heapq.nsmallest(n, ((-score, item) for item, score in total.items()
                                 if item not in exclude))
    result = []
    for negative, item in chosen:
        scores = leading[item][1]
        result.append(ScoredItem(item, -negative, scores.best[item][1], scores.source))
    return result


COOCCURRENCE = "co-occurrence"
SEQUENCE = "sequence"

REASONS = {
    "view": "because you viewed {}",
    "click": "because you clicked {}",
    "add_to_cart": "because you added {} to your cart",
    "purchase": "because you bought {}",
}


def because_you(event_type: str, item_label: str, source: str = COOCCURRENCE) -> str:
    if source == SEQUENCE:
        return f"often next after {item_label}"
    return REASONS.get(event_type, "because you interacted with {}").format(item_label)
