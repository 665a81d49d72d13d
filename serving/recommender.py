"""The recommenders the service offers, over the state in Redis.

Each returns a `RecommendationList`; the HTTP routes and the offline evaluator call these
same functions.
"""

import time
import uuid
from collections.abc import Collection
from dataclasses import dataclass

from pydantic import BaseModel, Field

from streamrec.contract import Settings, half_life_ms, value_at

from .scoring import because_you, recency_votes, score_candidates, similarity, top_n
from .state_reader import StateReader, Watermark

COOCCURRENCE = "co-occurrence"
TRENDING = "trending"
POPULAR = "popular"

#: Ranked items inspected at most when filters reject many (keeps a request bounded).
RANKING_SCAN_LIMIT = 20_000


class RecommendedItem(BaseModel):
    item_id: str
    score: float
    source: str = Field(description="co-occurrence, trending or popular")
    reason: str


class Freshness(BaseModel):
    scope: str = Field(description="'user': the user's own newest event; 'global': any event")
    event_time_ms: int | None = Field(description="Event time of the newest applied event.")
    applied_at_ms: int | None = Field(description="Wall time the worker applied it.")
    applied_ms_ago: int | None = Field(description="How long ago that was, when served.")


class RecommendationList(BaseModel):
    recommendation_id: str
    recommender: str
    items: list[RecommendedItem]
    freshness: Freshness


def _freshness(scope: str, watermark: Watermark) -> Freshness:
    ago = None
    if watermark.applied_at_ms is not None:
        ago = max(0, int(time.time() * 1000) - watermark.applied_at_ms)
    return Freshness(scope=scope, event_time_ms=watermark.event_time_ms,
                     applied_at_ms=watermark.applied_at_ms, applied_ms_ago=ago)


@dataclass(frozen=True, slots=True)
class Ranking:
    """A stored item ranking (a zset) and how to present its entries."""

    key: str
    source: str
    reason: str
    half_life_ms: float | None  # set for forward-decayed scores


def _new_list(recommender: str, items: list[RecommendedItem], scope: str,
              watermark: Watermark) -> RecommendationList:
    return RecommendationList(recommendation_id=uuid.uuid4().hex, recommender=recommender,
                              items=items, freshness=_freshness(scope, watermark))


class Recommender:
    def __init__(self, reader: StateReader, settings: Settings) -> None:
        self.reader = reader
        self.settings = settings
        self._trending_half_life = half_life_ms(settings.trending_half_life_days)

    async def for_user(self, user_id: str, n: int, category: str | None = None,
                       exclude: Collection[str] = (), now_ms: int | None = None,
                       fallback: bool = True) -> RecommendationList:
        """Co-occurrence with the user's recent items, topped up from trending (`fallback`)."""
        settings = self.settings
        history = await self.reader.user_history(user_id, settings.vote_items)
        items: list[RecommendedItem] = []
        if history.recent:
            votes = recency_votes(history.recent, settings.event_weights,
                                  settings.vote_position_decay)
            found = await self.reader.candidates([vote.item_id for vote in votes],
                                                 settings.candidate_row_depth, user_id, category)
            scored = score_candidates(votes, found.rows, found.user_counts, settings.similarity)
            voter_type = {vote.item_id: vote.event_type for vote in votes}
            items = [
                RecommendedItem(
                    item_id=s.item_id, score=s.score, source=COOCCURRENCE,
                    reason=because_you(voter_type[s.because_of],
                                       found.titles.get(s.because_of, s.because_of)))
                for s in top_n({j: s for j, s in scored.items() if j not in exclude}, n)
            ]
        if fallback and len(items) < n:
            items += await self._top_of(self._trending(category), n - len(items), user_id,
                                        {*exclude, *(i.item_id for i in items)}, now_ms)
        return _new_list("personalised", items, "user", history.watermark)

    async def similar_items(self, item_id: str, n: int, category: str | None = None,
                            exclude: Collection[str] = (), now_ms: int | None = None
                            ) -> RecommendationList:
        """Items most similar to `item_id` by normalised co-occurrence, topped up from trending."""
        settings = self.settings
        found = await self.reader.candidates([item_id], max(settings.candidate_row_depth, n),
                                             None, category)
        n_i = found.user_counts[item_id]
        label = found.titles.get(item_id, item_id)
        ranked = sorted(
            ((similarity(settings.similarity, c, n_i, found.user_counts[j]), j, c)
             for j, c in found.rows[item_id] if j not in exclude),
            key=lambda entry: (-entry[0], entry[1]),
        )[:n]
        items = [
            RecommendedItem(item_id=j, score=score, source=COOCCURRENCE,
                            reason=f"{int(c)} people who liked {label} also liked this")
            for score, j, c in ranked
        ]
        if len(items) < n:
            items += await self._top_of(self._trending(category), n - len(items), None,
                                        {*exclude, item_id, *(i.item_id for i in items)}, now_ms)
        return _new_list("similar", items, "global", await self.reader.global_watermark())

    async def trending(self, n: int, category: str | None = None,
                       exclude: Collection[str] = (), user_id: str | None = None,
                       now_ms: int | None = None) -> RecommendationList:
        """Highest exponentially decayed popularity (half-life `trending_half_life_days`)."""
        items = await self._top_of(self._trending(category), n, user_id, set(exclude), now_ms)
        return _new_list("trending", items, "global", await self.reader.global_watermark())

    async def popular(self, n: int, category: str | None = None,
                      exclude: Collection[str] = (), user_id: str | None = None
                      ) -> RecommendationList:
        """Highest all-time popularity (sum of event weights)."""
        items = await self._top_of(self._popular(category), n, user_id, set(exclude), None)
        return _new_list("popular", items, "global", await self.reader.global_watermark())

    def _trending(self, category: str | None) -> Ranking:
        keys = self.reader.keys
        if category:
            return Ranking(keys.category_trending(category), TRENDING,
                           f"trending in {category}", self._trending_half_life)
        return Ranking(keys.trending, TRENDING, "trending now", self._trending_half_life)

    def _popular(self, category: str | None) -> Ranking:
        keys = self.reader.keys
        if category:
            return Ranking(keys.category_popularity(category), POPULAR,
                           f"popular in {category}", None)
        return Ranking(keys.popularity, POPULAR, "popular", None)

    async def _top_of(self, ranking: Ranking, n: int, user_id: str | None, exclude: set[str],
                      now_ms: int | None) -> list[RecommendedItem]:
        """The ranking's top items, skipping excluded, seen (by `user_id`) and unavailable ones."""
        now_ms = int(time.time() * 1000) if now_ms is None else now_ms
        picked: list[RecommendedItem] = []
        start, page = 0, max(2 * n, 50)
        while start < RANKING_SCAN_LIMIT:
            entries = await self.reader.ranking_page(ranking.key, start, page)
            hidden = await self.reader.not_showable([i for i, _ in entries], user_id)
            for item, stored in entries:
                if item in exclude or item in hidden:
                    continue
                score = stored if ranking.half_life_ms is None else value_at(
                    stored, now_ms, self.settings.decay_anchor_ms, ranking.half_life_ms)
                picked.append(RecommendedItem(item_id=item, score=score, source=ranking.source,
                                              reason=ranking.reason))
                if len(picked) == n:
                    return picked
            if len(entries) < page:
                break
            start, page = start + page, page * 2  # users who saw much skip many: grow the pages
        return picked
