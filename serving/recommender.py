"""The recommenders the service offers, over the state in Redis.

Each returns a `RecommendationList`; the HTTP routes and the offline evaluator call these
same functions.
"""

import time
import uuid
from collections.abc import Collection

from pydantic import BaseModel, Field

from streamrec.contract import Settings, half_life_ms, value_at

from .scoring import because_you, recency_votes, score_candidates, similarity, top_n
from .state_reader import StateReader, Watermark

COOCCURRENCE = "co-occurrence"
TRENDING = "trending"

#: Trending items inspected at most when filters reject many (keeps a request bounded).
TRENDING_SCAN_LIMIT = 2000


class RecommendedItem(BaseModel):
    item_id: str
    score: float
    source: str = Field(description="co-occurrence or trending")
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
                       exclude: Collection[str] = (), now_ms: int | None = None
                       ) -> RecommendationList:
        """Co-occurrence with the user's recent items, topped up from trending."""
        settings = self.settings
        history = await self.reader.user_history(user_id, settings.vote_items)
        items: list[RecommendedItem] = []
        if history.recent:
            votes = recency_votes(history.recent, settings.event_weights,
                                  settings.vote_position_decay)
            voters = [vote.item_id for vote in votes]
            rows, user_counts, titles = await self.reader.cooccurrence_rows(
                voters, settings.candidate_row_depth)
            candidates = {j for row in rows.values() for j, _ in row}.difference(exclude)
            facts = await self.reader.item_facts(list(candidates), user_id, category)
            rejected = facts.seen | facts.unavailable | facts.outside_category | set(exclude)
            scored = score_candidates(votes, rows, {**facts.user_counts, **user_counts},
                                      settings.similarity)
            voter_type = {vote.item_id: vote.event_type for vote in votes}
            items = [
                RecommendedItem(
                    item_id=s.item_id, score=s.score, source=COOCCURRENCE,
                    reason=because_you(voter_type[s.because_of],
                                       titles.get(s.because_of, s.because_of)))
                for s in top_n({j: s for j, s in scored.items() if j not in rejected}, n)
            ]
        if len(items) < n:
            items += await self._trending(n - len(items), category, user_id,
                                          {*exclude, *(i.item_id for i in items)}, now_ms)
        return _new_list("personalised", items, "user", history.watermark)

    async def similar_items(self, item_id: str, n: int, category: str | None = None,
                            exclude: Collection[str] = (), now_ms: int | None = None
                            ) -> RecommendationList:
        """Items most similar to `item_id` by normalised co-occurrence, topped up from trending."""
        settings = self.settings
        depth = max(settings.candidate_row_depth, n)
        rows, user_counts, titles = await self.reader.cooccurrence_rows([item_id], depth)
        row = [(j, c) for j, c in rows[item_id] if j not in exclude]
        facts = await self.reader.item_facts([j for j, _ in row], None, category)
        rejected = facts.unavailable | facts.outside_category
        n_i = user_counts.get(item_id, 0.0)
        label = titles.get(item_id, item_id)
        ranked = sorted(
            ((similarity(settings.similarity, c, n_i, facts.user_counts.get(j, 0.0)), j, c)
             for j, c in row if j not in rejected),
            key=lambda entry: (-entry[0], entry[1]),
        )[:n]
        items = [
            RecommendedItem(item_id=j, score=score, source=COOCCURRENCE,
                            reason=f"{int(c)} people who liked {label} also liked this")
            for score, j, c in ranked
        ]
        if len(items) < n:
            items += await self._trending(n - len(items), category, None,
                                          {*exclude, item_id, *(i.item_id for i in items)}, now_ms)
        return _new_list("similar", items, "global", await self.reader.global_watermark())

    async def trending(self, n: int, category: str | None = None,
                       exclude: Collection[str] = (), user_id: str | None = None,
                       now_ms: int | None = None) -> RecommendationList:
        items = await self._trending(n, category, user_id, set(exclude), now_ms)
        return _new_list("trending", items, "global", await self.reader.global_watermark())

    async def _trending(self, n: int, category: str | None, user_id: str | None,
                        exclude: set[str], now_ms: int | None) -> list[RecommendedItem]:
        """Top decayed-popularity items, skipping excluded, seen and unavailable ones."""
        keys = self.reader.keys
        ranking = keys.category_trending(category) if category else keys.trending
        reason = f"trending in {category}" if category else "trending now"
        now_ms = int(time.time() * 1000) if now_ms is None else now_ms
        picked: list[RecommendedItem] = []
        page = max(2 * n, 50)
        for start in range(0, TRENDING_SCAN_LIMIT, page):
            entries = await self.reader.ranking_page(ranking, start, page)
            facts = await self.reader.item_facts([i for i, _ in entries], user_id, None)
            for item, stored in entries:
                if item in exclude or item in facts.seen or item in facts.unavailable:
                    continue
                score = value_at(stored, now_ms, self.settings.decay_anchor_ms,
                                 self._trending_half_life)
                picked.append(RecommendedItem(item_id=item, score=score, source=TRENDING,
                                              reason=reason))
                if len(picked) == n:
                    return picked
            if len(entries) < page:
                break
        return picked
