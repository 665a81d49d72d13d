"""The streaming reference that issue 13's goal is measured against (the team's definition,
`../shared/README.md`, "Reference figures"): item-to-item co-occurrence on exact counts.

A user's first interaction with item i adds 1 to c_ij and c_ji for each of their last
`window` distinct items j; n_i counts the users who interacted with i. The user's last 20
distinct items vote, the newest with 1 and older ones 0.9^age, with their rows of cosine
c_ij/√(n_i·n_j) or jaccard c_ij/(n_i + n_j − c_ij); the user's own items are excluded.

It runs in process beside the replay, so it is scored on exactly the replay's evaluated
events. Its counts are dense (items² per window, as the reference implementation's), so
`streamrec evaluate` skips a catalogue whose counts would not fit its budget (see
`reference_bytes`) rather than swap.
"""

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from itertools import islice
from typing import Literal

import numpy as np

REFERENCE_VOTES = 20
REFERENCE_VOTE_DECAY = 0.9
#: Counts are stored in float32 (exact below 2^24, half float64's memory); scores are summed
#: in float64, term by term as defined, so equal scores stay equal and order by index.
COUNT_TYPE = np.float32


@dataclass(frozen=True)
class ReferenceMethod:
    similarity: Literal["cosine", "jaccard"]
    window: int

    @property
    def name(self) -> str:
        return f"reference {self.similarity} w{self.window}"


#: The family the goal names ("cosine or jaccard co-occurrence, pair window 20-50"): the best
#: of these on a dataset is that dataset's reference.
REFERENCE_METHODS = tuple(ReferenceMethod(similarity, window)
                          for window in (20, 50) for similarity in ("cosine", "jaccard"))


def reference_bytes(items: int, methods: Sequence[ReferenceMethod] = REFERENCE_METHODS) -> int:
    """Memory of the dense counts for a catalogue of `items`."""
    return len({method.window for method in methods}) * items * items * COUNT_TYPE().itemsize


def largest_catalogue(budget: int, methods: Sequence[ReferenceMethod] = REFERENCE_METHODS
                      ) -> int:
    """The most items whose dense counts fit in `budget` bytes."""
    return int((budget / reference_bytes(1, methods)) ** 0.5)


class StreamingReference:
    """Exact co-occurrence counts, learned one interaction at a time, and each method's top k."""

    def __init__(self, item_ids: Iterable[str],
                 methods: Sequence[ReferenceMethod] = REFERENCE_METHODS) -> None:
        self.methods = tuple(methods)
        self.item_ids = list(dict.fromkeys(item_ids))
        self.index = {item: k for k, item in enumerate(self.item_ids)}
        items = len(self.item_ids)
        self.users_of = np.zeros(items, dtype=np.float64)  # n_i, as the scores sum
        self.pairs = {window: np.zeros((items, items), dtype=COUNT_TYPE)
                      for window in sorted({method.window for method in self.methods})}
        #: Each user's distinct items, least recently touched first.
        self.histories: dict[str, dict[int, None]] = {}

    def learn(self, user_id: str, item_id: str) -> None:
        item = self.index[item_id]
        history = self.histories.setdefault(user_id, {})
        if item in history:
            del history[item]  # touched again: becomes the newest; no new pairs
        else:
            newest = list(islice(reversed(history), max(self.pairs)))
            for window, pairs in self.pairs.items():
                partners = newest[:window]
                pairs[item, partners] += 1
                pairs[partners, item] += 1
            self.users_of[item] += 1
        history[item] = None

    def recommend(self, user_id: str, k: int) -> dict[str, list[str]]:
        """Each method's top k for the user (items with a positive score only), by name."""
        history = self.histories.get(user_id, {})
        voters = np.fromiter(islice(reversed(history), REFERENCE_VOTES), dtype=np.intp)
        votes = REFERENCE_VOTE_DECAY ** np.arange(len(voters))
        own = np.fromiter(history, dtype=np.intp, count=len(history))
        n_voters = self.users_of[voters][:, None]
        rows = {window: pairs[voters].astype(np.float64) for window, pairs in self.pairs.items()}
        lists = {}
        for method in self.methods:
            counts = rows[method.window]
            # one temporary per method, divided in place; a voter has n_i >= 1, and
            # n_i + n_j - c_ij >= n_i
            if method.similarity == "cosine":
                denominator = np.multiply(n_voters, self.users_of)
                np.sqrt(denominator, out=denominator)
            else:
                denominator = n_voters + self.users_of
                denominator -= counts
            np.maximum(denominator, 1, out=denominator)  # c_ij = 0 wherever n_j = 0
            scores = votes @ np.divide(counts, denominator, out=denominator)
            scores[own] = 0
            lists[method.name] = [self.item_ids[j] for j in top_positive(scores, k)]
        return lists


def top_positive(scores: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k best positive scores, best first; ties to the lower index."""
    candidates = np.flatnonzero(scores > 0)
    if len(candidates) > k:
        best = np.argpartition(-scores[candidates], k - 1)[:k]
        threshold = scores[candidates[best]].min()
        candidates = candidates[scores[candidates] >= threshold]  # every item tied at the edge
    order = np.lexsort((candidates, -scores[candidates]))
    return candidates[order][:k]
