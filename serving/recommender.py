"""The recommenders the service offers, over the state in Redis.

Each returns a `RecommendationList`; the HTTP routes and the offline evaluator call these
same functions.
"""

import uuid
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, replace

from pydantic import BaseModel, Field, PrivateAttr

from streamrec.contract import Recommender as RecommenderName
from streamrec.contract import ServedExperiment, Settings, half_life_ms, value_at
from streamrec.contract.clock import clock_ms

from .reranking import cap_per_category, penalise_shown
from .scoring import (
    COOCCURRENCE,
    JUDGED_LIST_LENGTH,
    SYMMETRIC_ALPHA,
    ScoredItem,
    Weighting,
    because_you,
    leading_weighting,
    recency_votes,
    session_factors,
    weighting_label,
)
from .state_reader import StateReader, Watermark
from .telemetry import record_list

TRENDING = "trending"
POPULAR = "popular"

#: Re-ranking looks at the best n * RERANK_DEPTH candidates.
RERANK_DEPTH = 3
#: Categories learned from a user's behaviour that the cold-start fallback draws from.
LEARNED_CATEGORIES = 3
#: How a session's items vote: as views (the weakest signal an anonymous visitor gives).
SESSION_EVENT_TYPE = "view"

#: How long a service process keeps the self-tuning blend's choice before reading again.
WEIGHTING_CHOICE_MS = 1000

#: Ranked items inspected at most when filters reject many: one script call reads them
#: while Redis waits for it, so this bounds how long a request can hold Redis (a user who
#: saw more of a ranking's head than this gets a shorter top-up from it).
RANKING_SCAN_LIMIT = 5_000


class RecommendedItem(BaseModel):
    item_id: str
    score: float
    source: str = Field(description="co-occurrence, sequence, neighbours, trending or popular")
    reason: str


class Freshness(BaseModel):
    scope: str = Field(description="'user': the user's own newest event; 'global': any event")
    event_time_ms: int | None = Field(description="Event time of the newest applied event.")
    applied_at_ms: int | None = Field(description="Wall time the worker applied it.")
    applied_ms_ago: int | None = Field(description="How long ago that was, when served.")


class RecommendationList(BaseModel):
    recommendation_id: str
    recommender: RecommenderName
    items: list[RecommendedItem]
    freshness: Freshness
    experiment: ServedExperiment | None = None
    _weighting_lists: dict[str, list[str]] = PrivateAttr(default_factory=dict)

    @property
    def weighting_lists(self) -> dict[str, list[str]]:
        """Self-tuning blend: per judged weighting (label), the top ids it would have served
        (not in the response: the list's impression carries them to the worker)."""
        return self._weighting_lists


def _freshness(scope: str, watermark: Watermark) -> Freshness:
    ago = None
    if watermark.applied_at_ms is not None:
        ago = max(0, clock_ms() - watermark.applied_at_ms)
    return Freshness(scope=scope, event_time_ms=watermark.event_time_ms,
                     applied_at_ms=watermark.applied_at_ms, applied_ms_ago=ago)


@dataclass(frozen=True, slots=True)
class Ranking:
    """A stored item ranking (a zset) and how to present its entries."""

    key: str
    source: str
    reason: str
    half_life_ms: float | None  # set for forward-decayed scores


def _new_list(recommender: RecommenderName, items: list[RecommendedItem], scope: str,
              watermark: Watermark, weighting_lists: dict[str, list[str]] | None = None
              ) -> RecommendationList:
    served = RecommendationList(recommendation_id=uuid.uuid4().hex, recommender=recommender,
                                items=items, freshness=_freshness(scope, watermark))
    served._weighting_lists = weighting_lists or {}
    record_list(recommender, served.recommendation_id, len(items))
    return served


@dataclass(frozen=True, slots=True)
class ListRequest:
    """What a caller asked of a list: passed whole through the private steps."""

    n: int
    category: str | None = None
    exclude: frozenset[str] = frozenset()
    now_ms: int | None = None
    fallback: bool = True
    max_per_category: int | None = None

    def now(self) -> int:
        """When the list is asked for (ms): `now_ms`, else the wall clock."""
        return clock_ms(self.now_ms)

    def excluding(self, more: Iterable[str]) -> "ListRequest":
        return replace(self, exclude=self.exclude | frozenset(more))

    def topping_up(self, items: Sequence["RecommendedItem"]) -> "ListRequest":
        """The request for what is still missing after `items`."""
        return replace(self, n=self.n - len(items),
                       exclude=self.exclude | {item.item_id for item in items})


@dataclass(frozen=True, slots=True)
class Learned:
    """A learned list before any top-up, and what the same read told about the sources."""

    items: list[RecommendedItem]
    by_source: dict[str, list[str]]  # each source's best ids alone
    by_weighting: dict[str, list[str]]  # each judged weighting's best ids (label ->)


class Recommender:
    def __init__(self, reader: StateReader, settings: Settings) -> None:
        self.reader = reader
        self.settings = settings
        self._trending_half_life = half_life_ms(settings.trending_half_life_days)
        self._weighting: Weighting = settings.weightings[0]
        self._weighting_chosen_at_ms: int | None = None

    async def for_user(self, user_id: str, n: int, *, category: str | None = None,
                       exclude: Collection[str] = (), now_ms: int | None = None,
                       fallback: bool = True, max_per_category: int | None = None
                       ) -> RecommendationList:
        """The blend of co-occurrence and sequence rules over the user's recent items, items
        the user keeps passing over penalised, at most `max_per_category` (default: the
        setting) per category; with `fallback`, topped up from trending in the categories
        the user likes (stated or learned), then from trending overall."""
        request = ListRequest(n, category, frozenset(exclude), now_ms, fallback,
                              max_per_category or self.settings.max_per_category)
        served, _ = await self._personalised(user_id, request, every_source=False)
        return served

    async def for_user_by_source(self, user_id: str, n: int, *, now_ms: int | None = None
                                 ) -> tuple[RecommendationList, dict[str, list[str]]]:
        """`for_user`, and the top n item ids each learned source alone would give (no
        re-ranking, no top-up), from the same single read: what the evaluator compares."""
        request = ListRequest(n, now_ms=now_ms, max_per_category=self.settings.max_per_category)
        return await self._personalised(user_id, request, every_source=True)

    async def _personalised(self, user_id: str, request: ListRequest, every_source: bool
                            ) -> tuple[RecommendationList, dict[str, list[str]]]:
        history = await self.reader.user_history(user_id, self.settings.vote_items)
        learned = await self._learned(history.recent, user_id, request, every_source,
                                      history.times_ms)
        items = learned.items
        if request.fallback and len(items) < request.n:
            items += await self._top_up(user_id, request, items)
        served = _new_list("personalised", items, "user", history.watermark,
                           weighting_lists=learned.by_weighting)
        return served, learned.by_source

    async def served_weighting(self, now_ms: int | None = None) -> Weighting:
        """The (co-occurrence, sequence, neighbours) weights lists are blended with: the
        configured ones until the self-tuning blend has judged enough lists, then the leading
        weighting; read again after `WEIGHTING_CHOICE_MS` (of `now_ms`, else of the wall clock)."""
        weightings = self.settings.weightings
        if len(weightings) == 1:
            return weightings[0]
        now_ms = clock_ms(now_ms)
        chosen_at = self._weighting_chosen_at_ms
        if chosen_at is None or not 0 <= now_ms - chosen_at < WEIGHTING_CHOICE_MS:
            self._weighting = leading_weighting(weightings, await self.reader.blend_evidence(),
                                                self.settings.blend_trials_before_switch)
            self._weighting_chosen_at_ms = now_ms
        return self._weighting

    async def _top_up(self, user_id: str, request: ListRequest,
                      learned: list[RecommendedItem]) -> list[RecommendedItem]:
        """What follows a short learned list: trending in the categories the user likes,
        then trending overall. Under a category cap the cap holds over the whole list: a few
        times the missing count is read from each, items past the cap are skipped, and the
        list may come out shorter than n when trending cannot fill it within the cap."""
        missing = request.topping_up(learned)
        if request.max_per_category is None:
            return await self._liked_trending(user_id, missing)
        wider = replace(missing, n=missing.n * RERANK_DEPTH)
        candidates = await self._liked_trending(user_id, wider)
        candidates += await self._top_of(self._trending(request.category), user_id,
                                         wider.excluding(i.item_id for i in candidates))
        listed = learned + candidates  # the learned part is within the cap already
        categories = await self.reader.primary_categories([i.item_id for i in listed])
        return cap_per_category(listed, categories, request.max_per_category,
                                request.n)[len(learned):]

    async def for_session(self, viewed: Sequence[str], n: int, *, category: str | None = None,
                          exclude: Collection[str] = (), now_ms: int | None = None
                          ) -> RecommendationList:
        """An anonymous visitor's items so far (oldest first) vote as a user's history would;
        topped up from trending. The viewed items themselves are never recommended."""
        recent = [(item, SESSION_EVENT_TYPE) for item in reversed(viewed)]
        request = ListRequest(n, category, frozenset(exclude), now_ms).excluding(viewed)
        items = (await self._learned(recent[:self.settings.vote_items], None, request)).items
        if len(items) < n:
            items += await self._top_of(self._trending(category), None,
                                        request.topping_up(items))
        return _new_list("session", items, "global", await self.reader.global_watermark())

    async def _learned(self, recent: Sequence[tuple[str, str]], user_id: str | None,
                       request: ListRequest, every_source: bool = False,
                       times_ms: Sequence[int] = ()) -> Learned:
        """The top n by the votes of `recent` (newest first; at `times_ms`, when known, for
        the session rule): co-occurrence blended with sequence rules (the served weighting),
        re-ranked by the user's impressions and the category cap; with `every_source`, the
        top n item ids of each source alone (no re-ranking); for a user, the top
        JUDGED_LIST_LENGTH ids of each weighting the blend judges (whatever n)."""
        if not recent:
            return Learned([], {}, {})
        settings = self.settings
        factors = session_factors(times_ms, request.now(), settings.session_gap_ms,
                                  settings.earlier_session_vote)
        votes = recency_votes(recent, settings.vote_type_weights, settings.vote_position_decay,
                              factors)
        weights = await self.served_weighting(request.now_ms)
        judged = settings.weightings if user_id is not None and len(settings.weightings) > 1 \
            else []
        with_sequence = every_source or any(sequence > 0 for _, sequence, _ in [weights, *judged])
        with_neighbours = every_source or any(
            neighbours > 0 for _, _, neighbours in [weights, *judged])
        next_votes = recency_votes(recent[:settings.sequence_votes] if with_sequence else [],
                                   settings.vote_type_weights, settings.sequence_vote_decay,
                                   factors)
        reranking = (user_id is not None and settings.impression_penalty < 1
                     ) or request.max_per_category is not None
        n = request.n
        found = await self.reader.scored(
            [(vote.item_id, vote.weight, next_votes[k].weight if k < len(next_votes) else 0.0)
             for k, vote in enumerate(votes)],
            depth=settings.candidate_row_depth, similarity=settings.similarity,
            alpha=settings.similarity_alpha, exponent=settings.similarity_exponent,
            weights=weights,
            top=n * RERANK_DEPTH if reranking else n,
            per_source=n if every_source else 0, weightings=judged,
            per_weighting=JUDGED_LIST_LENGTH,
            neighbour_count=settings.neighbour_count if with_neighbours else 0,
            neighbour_depth=settings.item_users_kept,
            neighbour_support=settings.neighbour_support, user_id=user_id,
            category=request.category, exclude=request.exclude)
        ranked = found.blended
        if reranking:
            ranked = await self._reranked(ranked, n, user_id, request.max_per_category)
        voter_type = {vote.item_id: vote.event_type for vote in votes}
        return Learned(
            [RecommendedItem(
                item_id=s.item_id, score=s.score, source=s.source,
                reason=because_you(voter_type.get(s.because_of),
                                   found.titles.get(s.because_of, s.because_of), s.source))
             for s in ranked],
            {source: [item for item, _ in best] for source, best in found.by_source.items()},
            {weighting_label(weighting): ids
             for weighting, ids in zip(judged, found.by_weighting, strict=True) if ids})

    async def _reranked(self, ranked: list[ScoredItem], n: int, user_id: str | None,
                        max_per_category: int | None) -> list[ScoredItem]:
        settings = self.settings
        ids = [item.item_id for item in ranked]
        if user_id is not None and settings.impression_penalty < 1:
            ranked = penalise_shown(ranked, await self.reader.shown_counts(user_id, ids),
                                    settings.impressions_before_penalty,
                                    settings.impression_penalty)
        if max_per_category is not None:
            ranked = cap_per_category(ranked, await self.reader.primary_categories(ids),
                                      max_per_category, n)
        return ranked[:n]

    async def _liked_trending(self, user_id: str, request: ListRequest
                              ) -> list[RecommendedItem]:
        """Cold start and top-up for a user: trending in the categories they like."""
        liked = [] if request.category else await self.reader.liked_categories(
            user_id, LEARNED_CATEGORIES)
        return await self._trending_within(liked, "trending in {}, which you like", user_id,
                                           request)

    async def _trending_within(self, categories: Sequence[str], reason: str,
                               user_id: str | None, request: ListRequest
                               ) -> list[RecommendedItem]:
        """Trending in any of `categories` (merged by score: all trending scores share one
        forward-decay scale), then trending overall (or in `category`)."""
        merged: dict[str, RecommendedItem] = {}
        for name in categories:
            ranking = self._trending(name)
            ranking = Ranking(ranking.key, ranking.source, reason.format(name),
                              ranking.half_life_ms)
            for item in await self._top_of(ranking, user_id, request):
                if item.item_id not in merged or merged[item.item_id].score < item.score:
                    merged[item.item_id] = item
        picked = sorted(merged.values(), key=lambda i: (-i.score, i.item_id))[:request.n]
        if len(picked) < request.n:
            picked += await self._top_of(self._trending(request.category), user_id,
                                         request.topping_up(picked))
        return picked

    async def similar_items(self, item_id: str, n: int, *, category: str | None = None,
                            exclude: Collection[str] = (), now_ms: int | None = None
                            ) -> RecommendationList:
        """Items most similar to `item_id` by normalised co-occurrence, topped up from trending
        in its categories (content neighbours for new items), then trending overall. The
        similarity here is symmetric whatever `similarity_alpha`: a neighbour list names the
        item's own kind (planted bundles are each other's nearest), where a user's next item
        leans towards what is popular; and its scores are the similarity itself whatever
        `similarity_exponent` (with one voter, q would not change the order)."""
        settings = self.settings
        found = await self.reader.scored(
            [(item_id, 1.0, 0.0)], depth=max(settings.candidate_row_depth, n),
            similarity=settings.similarity, alpha=SYMMETRIC_ALPHA,
            weights=(1.0, 0.0, 0.0), top=0, per_source=n,
            category=category, exclude=exclude)
        label = found.titles.get(item_id, item_id)
        items = [
            RecommendedItem(item_id=j, score=score, source=COOCCURRENCE,
                            reason=f"people who liked {label} also liked this")
            for j, score in found.by_source[COOCCURRENCE]
        ]
        if len(items) < n:  # a new item: its category neighbours until co-occurrence arrives
            shared = [] if category else await self.reader.item_categories(item_id)
            request = ListRequest(n, category, frozenset(exclude), now_ms).excluding([item_id])
            items += await self._trending_within(shared, "also in {}", None,
                                                 request.topping_up(items))
        return _new_list("similar", items, "global", await self.reader.global_watermark())

    async def trending(self, n: int, *, category: str | None = None,
                       exclude: Collection[str] = (), user_id: str | None = None,
                       now_ms: int | None = None) -> RecommendationList:
        """Highest exponentially decayed popularity (half-life `trending_half_life_days`)."""
        items = await self.trending_items(n, category=category, exclude=exclude,
                                          user_id=user_id, now_ms=now_ms)
        return _new_list("trending", items, "global", await self.reader.global_watermark())

    async def trending_items(self, n: int, *, category: str | None = None,
                             exclude: Collection[str] = (), user_id: str | None = None,
                             now_ms: int | None = None) -> list[RecommendedItem]:
        """`trending`'s items, not served as a list (what the dashboard looks at)."""
        return await self._top_of(self._trending(category), user_id,
                                  ListRequest(n, category, frozenset(exclude), now_ms))

    async def popular(self, n: int, *, category: str | None = None,
                      exclude: Collection[str] = (), user_id: str | None = None
                      ) -> RecommendationList:
        """Highest all-time popularity (sum of event weights)."""
        items = await self._top_of(self._popular(category), user_id,
                                   ListRequest(n, category, frozenset(exclude)))
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

    async def _top_of(self, ranking: Ranking, user_id: str | None, request: ListRequest
                      ) -> list[RecommendedItem]:
        """The ranking's top items, skipping excluded, seen (by `user_id`) and unavailable ones."""
        now_ms = request.now()
        top = await self.reader.top_of_ranking(ranking.key, request.n, user_id=user_id,
                                               exclude=request.exclude,
                                               scan_limit=RANKING_SCAN_LIMIT)
        return [RecommendedItem(item_id=item, score=stored if ranking.half_life_ms is None
                                else value_at(stored, now_ms, self.settings.decay_anchor_ms,
                                              ranking.half_life_ms),
                                source=ranking.source, reason=ranking.reason)
                for item, stored in top]
