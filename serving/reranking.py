"""Re-ranking a scored list: negative feedback from impressions, and diversity. Pure functions.

Both act on an over-fetched head of the ranking (a few times n), so they cost a bounded
amount per request whatever the number of candidates.
"""

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Protocol, TypeVar

from .scoring import ScoredItem


class Listed(Protocol):
    @property
    def item_id(self) -> str: ...


ListedItem = TypeVar("ListedItem", bound=Listed)


def penalise_shown(ranked: Sequence[ScoredItem], shown: Mapping[str, int], free: int,
                   penalty: float) -> list[ScoredItem]:
    """An item shown more than `free` times loses a factor `penalty` per extra showing, then
    the list is re-sorted. Items the user acted on are seen, hence never candidates: every
    showing counted here is one the user passed over."""
    penalised = [
        item if (extra := shown.get(item.item_id, 0) - free) <= 0
        else replace(item, score=item.score * penalty ** extra)
        for item in ranked
    ]
    return sorted(penalised, key=lambda s: (-s.score, s.item_id))


def cap_per_category(ranked: Sequence[ListedItem], primary_category: Mapping[str, str | None],
                     cap: int, n: int) -> list[ListedItem]:
    """The first n items of `ranked`, skipping an item once `cap` items of its primary
    category are in (items without a category are never skipped). May return fewer than n:
    the caller tops the list up from its fallback, as for any short list."""
    taken: list[ListedItem] = []
    per_category: Counter[str] = Counter()
    for item in ranked:
        category = primary_category.get(item.item_id)
        if category is not None:
            if per_category[category] >= cap:
                continue
            per_category[category] += 1
        taken.append(item)
        if len(taken) == n:
            break
    return taken
