"""The read path over a hand-made state: scores, filters, fallbacks and reasons exactly."""

import math

import pytest
from redis.asyncio import Redis

from serving import state_reader
from serving.impressions import impression_event
from serving.profiles import Preferences, Profiles
from serving.recommender import Recommender
from serving.state_reader import StateReader, Watermark
from stream_app.state_writer import StateWriter, StreamRecord
from streamrec.contract import (
    DAY_MS,
    SHARED_FIELD,
    ImpressionEvent,
    InteractionEvent,
    ItemEvent,
    RedisKeys,
    Settings,
    reuse,
)
from streamrec.contract.clock import clock_ms
from tests.support.servers import Servers

T0 = Settings().decay_anchor_ms + 10 * DAY_MS
NOW = T0 + 30 * DAY_MS

CATALOGUE = [("a", "shoes", "Red shoes"), ("b", "shoes", None), ("c", "hats", None),
             ("d", "hats", None), ("e", "shoes", None), ("f", "shoes", None)]
STREAM = [("u1", "a", "view"), ("u1", "b", "view"), ("u2", "a", "view"), ("u2", "c", "view"),
          ("u3", "a", "view"), ("u3", "c", "view"), ("u4", "b", "view"), ("u4", "d", "view"),
          ("u5", "e", "view"), ("u5", "f", "purchase"),
          ("me", "b", "view"), ("me", "a", "purchase")]


async def build_state(redis: Redis, settings: Settings) -> None:
    records = [StreamRecord("items:0", k, ItemEvent(item_id=i, categories=[c], title=title))
               for k, (i, c, title) in enumerate(CATALOGUE)]
    records += [
        StreamRecord("events:0", k, InteractionEvent(
            event_id=str(k), user_id=u, item_id=i, event_type=kind, timestamp=T0 + k * 1000))
        for k, (u, i, kind) in enumerate(STREAM)
    ]
    records.append(StreamRecord("items:0", len(CATALOGUE), ItemEvent(
        item_id="f", categories=["shoes"], available=False)))
    await StateWriter(redis, settings).apply(records, applied_at_ms=777)


async def recommender(redis: Redis, servers: Servers, **overrides: object) -> Recommender:
    """Co-occurrence alone with plain counts, symmetric cosine, votes weighted by event type
    and every item a neighbour has unless `overrides` say otherwise: the numbers below are
    worked out by hand for that (test_blend covers the sequence source)."""
    settings = servers.settings(**{
        "vote_position_decay": 0.5, "sequence_weight": 0.0, "cooccurrence_half_life_days": None,
        "similarity": "cosine", "similarity_alpha": 0.5, "votes_by_event_type": True,
        "neighbour_support": 1, **overrides})
    await build_state(redis, settings)
    return Recommender(StateReader(redis, RedisKeys(settings.key_prefix)), settings)


def listed(items: list) -> list[tuple[str, str]]:
    return [(item.item_id, item.source) for item in items]


async def test_personalised_scores_are_votes_times_cosine(redis: Redis, servers: Servers) -> None:
    # me: a (purchase, vote 8), b (view, vote 0.5 * 1). n_a=4 n_b=3 n_c=2 n_d=1, c_ac=2 c_bd=1.
    rec = await recommender(redis, servers)
    served = await rec.for_user("me", 3, now_ms=NOW)
    assert listed(served.items) == [("c", "co-occurrence"), ("d", "co-occurrence"),
                                    ("e", "trending")]
    # Scores are relative to the best learned candidate (the blend scales each source).
    assert served.items[0].score == pytest.approx(1.0)
    assert served.items[1].score == pytest.approx(
        (0.5 * 1 / math.sqrt(3 * 1)) / (8 * 2 / math.sqrt(4 * 2)))
    assert served.items[0].reason == "because you bought Red shoes"
    assert served.items[1].reason == "because you viewed b"
    assert served.freshness.scope == "user"
    assert served.freshness.event_time_ms == T0 + 11_000
    assert served.freshness.applied_at_ms == 777
    assert served.recommender == "personalised"
    assert len(served.recommendation_id) == 32


async def test_by_default_recency_alone_weighs_the_votes(redis: Redis, servers: Servers
                                                         ) -> None:
    # me: a (a purchase, but vote 1), b (vote 0.5), whatever their event types.
    assert not Settings().votes_by_event_type
    rec = await recommender(redis, servers, votes_by_event_type=False)
    served = await rec.for_user("me", 2, now_ms=NOW)
    assert [i.score for i in served.items] == pytest.approx([1.0, (0.5 * 1 / math.sqrt(3 * 1)) / (
        1 * 2 / math.sqrt(4 * 2))])


async def test_a_request_within_a_session_lowers_the_votes_of_earlier_sessions(
        redis: Redis, servers: Servers) -> None:
    # "back" viewed b, then a two hours later (a new session): n_a=5 n_b=4 n_c=2 n_d=1,
    # c_ac=2 c_bd=1. Asked 5 minutes after a, b votes 0.5 (its age) * 0.3 (earlier session);
    # asked the next day, when a new session starts, b votes by recency alone (0.5).
    rec = await recommender(redis, servers)
    later = T0 + 20_000 + 2 * 3_600_000
    await StateWriter(redis, rec.settings).apply([
        StreamRecord("events:1", k, InteractionEvent(
            event_id=f"back{k}", user_id="back", item_id=item, event_type="view", timestamp=at))
        for k, (item, at) in enumerate([("b", T0 + 20_000), ("a", later)])])
    c_score = 1 * 2 / math.sqrt(5 * 2)
    for now_ms, b_vote in [(later + 5 * 60_000, 0.5 * 0.3), (later + 86_400_000, 0.5)]:
        served = await rec.for_user("back", 2, now_ms=now_ms)
        assert [i.item_id for i in served.items] == ["c", "d"]
        assert [i.score for i in served.items] == pytest.approx(
            [1.0, (b_vote * 1 / math.sqrt(4 * 1)) / c_score])
    assert Settings().earlier_session_vote == 0.3 and Settings().session_gap_minutes == 30


async def test_jaccard_is_a_setting(redis: Redis, servers: Servers) -> None:
    rec = await recommender(redis, servers, similarity="jaccard")
    served = await rec.for_user("me", 2, now_ms=NOW)
    assert [i.score for i in served.items] == pytest.approx([1.0, (0.5 * 1 / (3 + 1 - 1)) / (
        8 * 2 / (4 + 2 - 2))])


async def test_similarity_alpha_is_a_setting(redis: Redis, servers: Servers) -> None:
    # alpha 1: c_ij / n_i, so d (n_d=1) no longer gains from being rare
    rec = await recommender(redis, servers, similarity_alpha=1.0)
    served = await rec.for_user("me", 2, now_ms=NOW)
    assert [i.score for i in served.items] == pytest.approx([1.0, (0.5 * 1 / 3) / (8 * 2 / 4)])


async def test_similarity_exponent_is_a_setting(redis: Redis, servers: Servers) -> None:
    # q 0.5: each term is vote * cos^0.5 (c: 8 * (2/sqrt(8))^0.5, d: 0.5 * (1/sqrt(3))^0.5);
    # similar lists keep the similarity itself
    rec = await recommender(redis, servers, similarity_exponent=0.5)
    served = await rec.for_user("me", 2, now_ms=NOW)
    assert [i.score for i in served.items] == pytest.approx(
        [1.0, (0.5 * (1 / math.sqrt(3)) ** 0.5) / (8 * (2 / math.sqrt(8)) ** 0.5)])
    similar = await rec.similar_items("a", 1, now_ms=NOW)
    assert similar.items[0].score == pytest.approx(2 / math.sqrt(8))


async def test_filters_exclude_category_seen_and_unavailable(redis: Redis, servers: Servers
                                                             ) -> None:
    rec = await recommender(redis, servers)
    assert listed((await rec.for_user("me", 3, exclude={"c"}, now_ms=NOW)).items) == [
        ("d", "co-occurrence"), ("e", "trending")]  # a, b seen; f unavailable
    assert listed((await rec.for_user("me", 5, category="shoes", now_ms=NOW)).items) == [
        ("e", "trending")]
    assert [i.reason for i in (await rec.for_user("me", 1, category="shoes", now_ms=NOW)).items
            ] == ["trending in shoes"]


async def test_cold_user_gets_trending_with_decayed_scores(redis: Redis, servers: Servers
                                                           ) -> None:
    rec = await recommender(redis, servers)
    served = await rec.for_user("stranger", 3, now_ms=NOW)
    assert listed(served.items) == [("a", "trending"), ("b", "trending"), ("c", "trending")]
    # a: views at T0+0s, 2s, 4s and a purchase (8) at 11s, each halved once by NOW (T0 + 30d).
    assert served.items[0].score == pytest.approx(11 / 2, rel=1e-4)
    assert served.freshness.event_time_ms is None


@pytest.mark.parametrize("alpha", [0.5, 1.0])
async def test_similar_items_rank_by_normalised_cooccurrence(redis: Redis, servers: Servers,
                                                             alpha: float) -> None:
    rec = await recommender(redis, servers, similarity_alpha=alpha)
    served = await rec.similar_items("a", 3, now_ms=NOW)
    # c_ab = 2 (u1, me), c_ac = 2 (u2, u3): cos(a,c) = 2/sqrt(4*2) > cos(a,b) = 2/sqrt(4*3),
    # symmetric whatever the alpha of personalised lists (with 1 they would tie at 2/4)
    assert listed(served.items) == [("c", "co-occurrence"), ("b", "co-occurrence"),
                                    ("e", "trending")]  # e's view is newer than d's
    assert served.items[0].score == pytest.approx(2 / math.sqrt(8))
    assert served.items[0].reason == "people who liked Red shoes also liked this"
    assert served.freshness.scope == "global"


async def test_trending_skips_unavailable_and_respects_category(redis: Redis, servers: Servers
                                                                ) -> None:
    rec = await recommender(redis, servers)
    assert listed((await rec.trending(10, category="hats", now_ms=NOW)).items) == [
        ("c", "trending"), ("d", "trending")]
    assert "f" not in {i.item_id for i in (await rec.trending(10, now_ms=NOW)).items}


async def test_popular_ranks_by_all_time_weight_and_fallback_can_be_off(
        redis: Redis, servers: Servers) -> None:
    rec = await recommender(redis, servers)
    # popularity (weights): a 3 views + 1 purchase = 11, b 3, c 2, d 1, e 1; f unavailable.
    served = await rec.popular(3, user_id="stranger")
    assert [(i.item_id, i.score, i.source) for i in served.items] == [
        ("a", 11.0, "popular"), ("b", 3.0, "popular"), ("c", 2.0, "popular")]
    assert listed((await rec.popular(5, category="hats")).items) == [
        ("c", "popular"), ("d", "popular")]
    only_cooccurrence = await rec.for_user("me", 5, now_ms=NOW, fallback=False)
    assert listed(only_cooccurrence.items) == [("c", "co-occurrence"), ("d", "co-occurrence")]


async def test_top_up_prefers_trending_in_the_users_liked_categories(redis: Redis,
                                                                     servers: Servers) -> None:
    # u5 touched only shoes (e, then f, now unavailable): after co-occurrence (nothing left
    # unseen) comes trending in shoes, a before b, and only then hats by overall trending.
    rec = await recommender(redis, servers)
    served = await rec.for_user("u5", 4, now_ms=NOW)
    assert listed(served.items) == [("a", "trending"), ("b", "trending"), ("c", "trending"),
                                    ("d", "trending")]
    assert [i.reason for i in served.items] == [
        "trending in shoes, which you like", "trending in shoes, which you like",
        "trending now", "trending now"]


async def test_stated_preferences_steer_a_new_users_first_list(redis: Redis, servers: Servers
                                                               ) -> None:
    rec = await recommender(redis, servers)
    profiles = Profiles(redis, rec.reader.keys, ttl_seconds=86400)
    stored = await profiles.save("newcomer", Preferences(categories=["hats"]))
    assert stored.categories == ["hats"]
    served = await rec.for_user("newcomer", 3, now_ms=NOW)
    # Without preferences: a, b, c (overall trending). With hats: c, d first.
    assert [i.item_id for i in served.items] == ["c", "d", "a"]
    assert served.items[0].reason == "trending in hats, which you like"
    assert (await profiles.save("newcomer", Preferences(categories=[]))).categories == []
    assert [i.item_id for i in (await rec.for_user("newcomer", 3, now_ms=NOW)).items] == [
        "a", "b", "c"]


async def test_anonymous_session_items_vote_like_a_history(redis: Redis, servers: Servers
                                                           ) -> None:
    rec = await recommender(redis, servers)
    # Session a then b (b newest, vote 1; a vote 0.5, both views): c from a, d from b;
    # a and b themselves are never recommended.
    served = await rec.for_session(["a", "b"], 3, now_ms=NOW)
    assert listed(served.items) == [("d", "co-occurrence"), ("c", "co-occurrence"),
                                    ("e", "trending")]
    assert served.items[1].score / served.items[0].score == pytest.approx(
        (0.5 * 2 / math.sqrt(4 * 2)) / (1 * 1 / math.sqrt(3 * 1)))
    assert served.items[1].reason == "because you viewed Red shoes"
    assert served.recommender == "session"
    assert listed((await rec.for_session([], 2, now_ms=NOW)).items) == [
        ("a", "trending"), ("b", "trending")]


async def test_a_new_item_gets_its_category_neighbours_until_co_occurrence_arrives(
        redis: Redis, servers: Servers) -> None:
    rec = await recommender(redis, servers)
    await StateWriter(redis, rec.settings).apply(
        [StreamRecord("items:0", 100, ItemEvent(item_id="new-hat", categories=["hats"]))])
    served = await rec.similar_items("new-hat", 3, now_ms=NOW)
    assert [(i.item_id, i.reason) for i in served.items] == [
        ("c", "also in hats"), ("d", "also in hats"), ("a", "trending now")]


async def test_blend_adds_sequence_rules_to_co_occurrence(redis: Redis, servers: Servers
                                                          ) -> None:
    # next rows (window 5, 1/distance): a -> b 1, c 2 (u1; u2, u3); b -> d 1 (u4), a 1 (me).
    # me votes a (purchase 8) and b (view 1 * 0.5): sequence c = 8*2 = 16, d = 0.5*1;
    # co-occurrence c = 8*2/sqrt(8), d = 0.5/sqrt(3). Each scaled to its best, then weighted.
    rec = await recommender(redis, servers, sequence_weight=2.0)
    served = await rec.for_user("me", 2, now_ms=NOW, fallback=False)
    cooc_d = (0.5 / math.sqrt(3)) / (16 / math.sqrt(8))
    assert [(i.item_id, i.source, i.reason) for i in served.items] == [
        ("c", "sequence", "often next after Red shoes"), ("d", "sequence", "often next after b")]
    assert [i.score for i in served.items] == pytest.approx([1 + 2 * 1, cooc_d + 2 * 0.5 / 16])


async def test_the_list_and_each_source_alone_from_one_read(redis: Redis, servers: Servers) -> None:
    rec = await recommender(redis, servers)  # sequence weight 0: it is still read here
    served, by_source = await rec.for_user_by_source("me", 2, now_ms=NOW)
    assert [i.item_id for i in served.items] == ["c", "d"]
    assert by_source == {"co-occurrence": ["c", "d"], "sequence": ["c", "d"],
                         "neighbours": ["c", "d"]}
    assert (await rec.for_user_by_source("stranger", 2, now_ms=NOW))[1] == {}


async def test_neighbours_vote_with_the_votes_they_share_over_the_root_of_what_they_know(
        redis: Redis, servers: Servers) -> None:
    # me: a (purchase, vote 8), b (view, vote 0.5). a's users u1 u2 u3, b's u1 u4. u1
    # (8.5/sqrt 2) knows nothing new; u2, u3 (8/sqrt 2 each) know c; u4, who also took e and
    # the unavailable f, (0.5/sqrt 4) knows d and e. c = 16/sqrt 2 (through a), d = e = 0.25
    # (through b).
    rec = await recommender(redis, servers, neighbours_weight=1.0, cooccurrence_weight=0.0)
    await StateWriter(redis, rec.settings).apply([
        StreamRecord("events:0", 100 + k, InteractionEvent(
            event_id=f"more{k}", user_id="u4", item_id=i, event_type="view",
            timestamp=T0 + (20 + k) * 1000)) for k, i in enumerate(("e", "f"))])
    served = await rec.for_user("me", 3, now_ms=NOW, fallback=False)
    assert [(i.item_id, i.source, i.reason) for i in served.items] == [
        ("c", "neighbours", "liked by others who liked Red shoes"),
        ("d", "neighbours", "liked by others who liked b"),
        ("e", "neighbours", "liked by others who liked b")]
    assert [i.score for i in served.items] == pytest.approx(
        [1.0, 0.25 / (16 / math.sqrt(2)), 0.25 / (16 / math.sqrt(2))])
    # The 2 heaviest neighbours only: u1 and one of u2, u3 (the smaller id): c alone.
    rec = await recommender(redis, servers, neighbours_weight=1.0, cooccurrence_weight=0.0,
                            neighbour_count=2)
    served = await rec.for_user("me", 2, now_ms=NOW, fallback=False)
    assert [(i.item_id, i.score) for i in served.items] == [("c", 1.0)]
    # A voter reads its newest users in proportion to its vote: item_users_kept for a (8),
    # 1/16 of it for b (0.5). b's newest are me (never my own neighbour), u4, u1: at 16 b
    # reads me alone and d is not found, at 32 it reads u4 too.
    for kept, expected in ((16, ["c"]), (32, ["c", "d"])):
        rec = await recommender(redis, servers, neighbours_weight=1.0, cooccurrence_weight=0.0,
                                item_users_kept=kept)
        served = await rec.for_user("me", 3, now_ms=NOW, fallback=False)
        assert [i.item_id for i in served.items] == expected


async def test_an_item_of_one_neighbour_alone_is_not_shown_through_them(
        redis: Redis, servers: Servers) -> None:
    # As above without e, f: c is u2's and u3's (16/sqrt 2), d is u4's alone (0.5/sqrt 2). At
    # support 2 only c is found, at 3 nothing is.
    for support, expected in ((1, [("c", 1.0), ("d", 0.5 / 16)]), (2, [("c", 1.0)]), (3, [])):
        rec = await recommender(redis, servers, neighbours_weight=1.0, cooccurrence_weight=0.0,
                                neighbour_support=support)
        served = await rec.for_user("me", 3, now_ms=NOW, fallback=False)
        assert [i.item_id for i in served.items] == [item for item, _ in expected], support
        assert [i.score for i in served.items] == pytest.approx([score for _, score in expected])


async def test_a_look_alike_is_not_shown_one_persons_history(redis: Redis, servers: Servers
                                                               ) -> None:
    # The victim took a rare item, two private ones and one a crowd member also took; the
    # crowd took popular items. Someone who knows of the rare item takes it and a popular one:
    # the victim becomes a neighbour (through the rare item, the crowd through the popular
    # one), but their private items, which no other neighbour has, are never shown (they are
    # at 1); and the item they share with one crowd member is shown without naming either
    # voter, as "who liked the rare item" would say the victim has it. (Co-occurrence, not
    # weighed here, shows what the victim took near the rare item: the README says so.)
    stream = [("victim", "rare"), ("victim", "private-1"), ("victim", "private-2"),
              ("victim", "shared-once"), ("crowd-0", "shared-once")]
    stream += [(f"crowd-{k}", item) for k in range(5) for item in ("popular", "hit")]
    stream += [("attacker", "popular"), ("attacker", "rare")]
    nobody = "liked by people who like what you like"
    for support, shown in (
            (1, {"private-1", "private-2", "shared-once", "hit"}),
            (2, {("shared-once", nobody), ("hit", "liked by others who liked popular")})):
        settings = servers.settings(neighbours_weight=1.0, cooccurrence_weight=0.0,
                                    sequence_weight=0.0, neighbour_support=support)
        await StateWriter(redis, settings).apply([StreamRecord("events:0", k, InteractionEvent(
            event_id=str(k), user_id=user, item_id=item, event_type="view",
            timestamp=T0 + k * 1000)) for k, (user, item) in enumerate(stream)])
        rec = Recommender(StateReader(redis, RedisKeys(settings.key_prefix)), settings)
        served = (await rec.for_user("attacker", 10, now_ms=NOW, fallback=False)).items
        if support == 1:
            assert {item.item_id for item in served} == shown
            assert all(item.reason != nobody for item in served)
        else:
            assert {(item.item_id, item.reason) for item in served} == shown


async def test_a_neighbour_is_someone_whose_interactions_are_shared(
        redis: Redis, servers: Servers) -> None:
    # As above, u4 alone brings d. A user whose state expired and who came back is still in
    # the users of the items they took before, but under the new-user rule again: no vote.
    rec = await recommender(redis, servers, neighbours_weight=1.0, cooccurrence_weight=0.0)
    assert [i.item_id for i in (await rec.for_user("me", 3, now_ms=NOW,
                                                   fallback=False)).items] == ["c", "d"]
    await redis.hdel(RedisKeys(rec.settings.key_prefix).user_item_types("u4"), SHARED_FIELD)
    assert [i.item_id for i in (await rec.for_user("me", 3, now_ms=NOW,
                                                   fallback=False)).items] == ["c"]


async def test_a_sessions_own_items_are_not_what_its_neighbours_vote_for(
        redis: Redis, servers: Servers) -> None:
    # Session [a]: a's users u1 u2 u3 me, each knowing 2 items, weigh 1/sqrt(2); beside a,
    # u1 and me took b, u2 and u3 c. a itself, in every neighbour's history, is neither
    # recommended nor the source's best (it would halve the others' scores).
    rec = await recommender(redis, servers, neighbours_weight=1.0, cooccurrence_weight=0.0)
    served = await rec.for_session(["a"], 2, now_ms=NOW)
    assert [(i.item_id, i.source, i.score) for i in served.items] == [
        ("b", "neighbours", 1.0), ("c", "neighbours", 1.0)]


async def test_the_service_penalises_what_a_user_keeps_ignoring(redis: Redis, servers: Servers
                                                                ) -> None:
    rec = await recommender(redis, servers, impression_penalty=0.1,
                            impressions_before_penalty=1)
    assert listed((await rec.for_user("me", 2, now_ms=NOW)).items)[0] == ("c", "co-occurrence")
    shown = [StreamRecord("events:1", k, ImpressionEvent(
        event_id=f"i{k}", user_id="me", event_type="impression", item_ids=["c"],
        timestamp=NOW, recommender="personalised")) for k in range(3)]
    await StateWriter(redis, rec.settings).apply(shown)
    served = await rec.for_user("me", 2, now_ms=NOW)
    # c shown 3 times, 2 beyond the free one: 8*2/sqrt(8) * 0.1^2 < d's 0.5/sqrt(3).
    assert listed(served.items) == [("d", "co-occurrence"), ("c", "co-occurrence")]
    assert served.items[1].score == pytest.approx(1.0 * 0.01)  # the best, penalised twice


async def test_max_per_category_diversifies_a_personalised_list(redis: Redis, servers: Servers
                                                                ) -> None:
    rec = await recommender(redis, servers)
    # c and d are both hats: a cap of 1 keeps c and tops up with trending instead of d.
    capped = await rec.for_user("me", 2, now_ms=NOW, max_per_category=1)
    assert listed(capped.items) == [("c", "co-occurrence"), ("e", "trending")]
    assert listed((await rec.for_user("me", 2, now_ms=NOW)).items) == [
        ("c", "co-occurrence"), ("d", "co-occurrence")]


async def test_the_category_cap_holds_over_the_top_up(redis: Redis, servers: Servers) -> None:
    rec = await recommender(redis, servers)
    # me: c (hats) is learned; the top-up brings e (shoes, which me likes), never d, a
    # second hat; b and a are seen, f unavailable: two items, though three were asked for.
    capped = await rec.for_user("me", 3, now_ms=NOW, max_per_category=1)
    assert listed(capped.items) == [("c", "co-occurrence"), ("e", "trending")]
    # u5 learned nothing unseen: trending in shoes (a), then overall (b is shoes: c).
    capped = await rec.for_user("u5", 4, now_ms=NOW, max_per_category=1)
    assert listed(capped.items) == [("a", "trending"), ("c", "trending")]
    assert listed((await rec.for_user("u5", 4, now_ms=NOW, max_per_category=2)).items) == [
        ("a", "trending"), ("b", "trending"), ("c", "trending"), ("d", "trending")]


async def test_the_service_serves_the_weighting_the_stream_judged_best(
        redis: Redis, servers: Servers) -> None:
    # As in test_blend: co-occurrence c 8*2/sqrt(8) (its best), d 0.5/sqrt(3); sequence c 16,
    # d 0.5; neighbours (as in the test above, u4 knowing b and d only) c 16/sqrt(2),
    # d 0.5/sqrt(2).
    rec = await recommender(redis, servers, blend_weightings=[(0.0, 1.0), (0.0, 0.0, 1.0)],
                            blend_trials_before_switch=10)
    served = await rec.for_user("me", 2, now_ms=NOW, fallback=False)
    assert served.weighting_lists == {"1:0": ["c", "d"], "0:1": ["c", "d"],
                                      "0:0:1": ["c", "d"]}
    assert impression_event("me", served).weighting_lists == served.weighting_lists
    # the shadow lists hold each weighting's best JUDGED_LIST_LENGTH, whatever n was asked
    one = await rec.for_user("me", 1, now_ms=NOW, fallback=False)
    assert one.weighting_lists == served.weighting_lists
    cooc_d = (0.5 / math.sqrt(3)) / (16 / math.sqrt(8))
    assert [i.score for i in served.items] == pytest.approx([1, cooc_d])  # nothing judged yet

    keys = RedisKeys(rec.settings.key_prefix)
    await redis.hset(keys.blend_evidence,
                     mapping={"\x1ftrials": 10, "1:0": 2, "0:1": 3, "0:0:1": 1})
    later = await rec.for_user("me", 2, now_ms=NOW + 999, fallback=False)
    assert [i.score for i in later.items] == pytest.approx([1, cooc_d])  # the choice is kept 1 s
    assert await rec.served_weighting(NOW + 1000) == (0.0, 1.0, 0.0)
    switched = await rec.for_user("me", 2, now_ms=NOW + 1000, fallback=False)
    assert [(i.item_id, i.source) for i in switched.items] == [("c", "sequence"), ("d", "sequence")]
    assert [i.score for i in switched.items] == pytest.approx([1, 0.5 / 16])

    await redis.hset(keys.blend_evidence, "0:0:1", 4)
    assert await rec.served_weighting(NOW + 2000) == (0.0, 0.0, 1.0)
    switched = await rec.for_user("me", 2, now_ms=NOW + 2000, fallback=False)
    assert [(i.item_id, i.source) for i in switched.items] == [
        ("c", "neighbours"), ("d", "neighbours")]
    assert [i.score for i in switched.items] == pytest.approx(
        [1, (0.5 / math.sqrt(2)) / (16 / math.sqrt(2))])


async def test_a_ranking_is_read_past_what_the_user_may_not_see(redis: Redis, servers: Servers
                                                               ) -> None:
    """Pages grow (50, then 100, ...) until `n` showable items are found or `scan_limit`
    entries are read (the last page cut to it): here the first 120 were seen, two are
    unavailable, one excluded."""
    keys = RedisKeys(servers.settings().key_prefix)
    reader = StateReader(redis, keys)
    await redis.zadd("ranking", {f"i{k:03}": 300 - k for k in range(300)})
    await redis.zadd(keys.user_affinity("reader"), {f"i{k:03}": 1 for k in range(120)})
    await redis.sadd(keys.unavailable_items, "i120", "i122")
    top = await reader.top_of_ranking("ranking", 5, user_id="reader", exclude={"i121"},
                                      scan_limit=150)
    assert top == [(f"i{k}", 300.0 - k) for k in range(123, 128)]
    assert await reader.top_of_ranking("ranking", 5, user_id="reader", exclude=(),
                                       scan_limit=120) == []
    assert await reader.top_of_ranking("ranking", 5, user_id="reader", exclude=(),
                                       scan_limit=124) == [("i121", 179.0), ("i123", 177.0)]
    assert [item for item, _ in await reader.top_of_ranking(
        "ranking", 3, user_id=None, exclude=(), scan_limit=50)] == ["i000", "i001", "i002"]


async def test_a_process_reuses_the_global_watermark_for_a_tenth_of_a_second(
        redis: Redis, servers: Servers, monkeypatch: pytest.MonkeyPatch) -> None:
    keys = RedisKeys(servers.settings().key_prefix)
    reader = StateReader(redis, keys)
    clock = [1000.0]
    monkeypatch.setattr(reuse.time, "monotonic", lambda: clock[0])
    await redis.hset(keys.watermark, mapping={"event_time_ms": 5, "applied_at_ms": 6})
    assert await reader.global_watermark() == Watermark(5, 6)
    await redis.hset(keys.watermark, mapping={"event_time_ms": 7, "applied_at_ms": 8})
    clock[0] += state_reader.GLOBAL_WATERMARK_REUSE_SECONDS * 0.99
    assert await reader.global_watermark() == Watermark(5, 6)  # reused: no read
    clock[0] += state_reader.GLOBAL_WATERMARK_REUSE_SECONDS * 0.02
    assert await reader.global_watermark() == Watermark(7, 8)


async def test_shadow_lists_hold_ten_whatever_the_length_asked(redis: Redis, servers: Servers
                                                              ) -> None:
    # me took x; each of 14 others took x and one y: 14 candidates, y0 the strongest (taken
    # twice more), then the newest pairs (forward decay: a later pair adds a little more).
    settings = servers.settings()
    takers = [(f"v{k}", f"y{k}") for k in range(14)] + [("w1", "y0"), ("w2", "y0")]
    events = [("me", "x")] + [(user, item) for user, liked in takers for item in ("x", liked)]
    await StateWriter(redis, settings).apply([
        StreamRecord("events:0", k, InteractionEvent(
            event_id=str(k), user_id=u, item_id=i, event_type="view", timestamp=T0 + k * 1000))
        for k, (u, i) in enumerate(events)])
    rec = Recommender(StateReader(redis, RedisKeys(settings.key_prefix)), settings)
    best_ten = ["y0", *(f"y{k}" for k in range(13, 4, -1))]
    for n in (3, 12):
        served = await rec.for_user("me", n, now_ms=NOW, fallback=False)
        assert len(served.items) == n
        assert served.weighting_lists == {label: best_ten for label in served.weighting_lists}
        assert len(served.weighting_lists) == len(settings.weightings)


async def test_a_source_whose_best_score_is_subnormal_still_scores_finitely(
        redis: Redis, servers: Servers) -> None:
    """Events ~1,050 one-day half-lives before the anchor store next_ij near 2^-1050, a
    subnormal double: scaling by 1 / that best overflowed to inf (the list's scores inf or
    NaN, which broke its order). A source whose scale would not be finite is left out."""
    now = clock_ms()
    settings = servers.settings(cooccurrence_half_life_days=1, decay_anchor_ms=now)
    old = now - 1050 * DAY_MS
    events = [("a", "x", old), ("a", "y", old + 1000), ("b", "x", old + 2000),
              ("b", "z", old + 3000), ("me", "x", now)]
    await StateWriter(redis, settings).apply([
        StreamRecord("events:0", k, InteractionEvent(
            event_id=str(k), user_id=u, item_id=i, event_type="view", timestamp=t))
        for k, (u, i, t) in enumerate(events)])
    served = await Recommender(StateReader(redis, RedisKeys(settings.key_prefix)),
                               settings).for_user("me", 5, now_ms=now)
    assert served.items
    assert all(math.isfinite(item.score) for item in served.items)
