"""Item-to-item scoring from streaming co-occurrence counts. Pure functions, no I/O.

Notation (as in SAR and item-based CF): c_ij is the number of users who interacted with
items i and j close together (within the pair window), n_i the number of users who
interacted with i.

Similarity of j to i:
    count    s_ij = c_ij
    cosine   s_ij = c_ij / sqrt(n_i * n_j)
    jaccard  s_ij = c_ij / (n_i + n_j - c_ij)

A user's recent items vote for candidates. The item of age a (0 = newest) whose latest event
had type t votes with v = decay^a * weight(t), and

    score(j) = sum_i v_i * s_ij

over the user's `vote_items` most recent items. The item with the largest term is the reason.
"""

import math
from collections.abc import Mapping, Sequence
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


def score_candidates(
    votes: Sequence[Vote],
    rows: Mapping[str, Sequence[tuple[str, float]]],
    user_counts: Mapping[str, float],
    kind: Similarity,
) -> dict[str, ScoredItem]:
    """score(j) = sum_i v_i * s_ij over the co-occurrence rows of the voting items."""
    totals: dict[str, float] = {}
    best: dict[str, tuple[float, str]] = {}
    for vote in votes:
        n_i = user_counts.get(vote.item_id, 0.0)
        for candidate, c_ij in rows.get(vote.item_id, ()):
            term = vote.weight * similarity(kind, c_ij, n_i, user_counts.get(candidate, 0.0))
            if candidate in totals:
                totals[candidate] += term
                if term > best[candidate][0]:
                    best[candidate] = (term, vote.item_id)
            else:
                totals[candidate] = term
                best[candidate] = (term, vote.item_id)
    return {item: ScoredItem(item, total, best[item][1]) for item, total in totals.items()}


def top_n(scored: Mapping[str, ScoredItem], n: int) -> list[ScoredItem]:
    """Highest score first; ties by item id so results are reproducible."""
    return sorted(scored.values(), key=lambda s: (-s.score, s.item_id))[:n]


REASONS = {
    "view": "because you viewed {}",
    "click": "because you clicked {}",
    "add_to_cart": "because you added {} to your cart",
    "purchase": "because you bought {}",
}


def because_you(event_type: str, item_label: str) -> str:
    return REASONS.get(event_type, "because you interacted with {}").format(item_label)
