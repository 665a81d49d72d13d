"""The write path's state on a hand-made stream: every counter, row and vector exactly."""

import json
import math

import orjson
import pytest
from pydantic import SecretStr
from redis.asyncio import Redis

from serving.recommender import Recommender
from serving.state_reader import StateReader
from stream_app.state_writer import (
    LUA,
    LearningSettingsChanged,
    LogEpoch,
    StateWriter,
    StreamRecord,
    _encode,
)
from streamrec.contract import (
    DAY_MS,
    ForgetRequest,
    ImpressionEvent,
    InteractionEvent,
    ItemEvent,
    RedisKeys,
    Settings,
    forward_decayed,
    half_life_ms,
    pseudonym,
)
from streamrec.contract.clock import clock_ms
from tests.support.servers import Servers
from tests.support.sessions import GAP_MINUTES, SESSION_CASES, SessionCase
from tests.support.state import differences, dump_state

ANCHOR = Settings().decay_anchor_ms
T0 = ANCHOR + 30 * DAY_MS
HALF_LIFE = half_life_ms(30)

CATALOGUE = [
    ItemEvent(item_id="a", categories=["shoes"], title="Red shoes"),
    ItemEvent(item_id="b", categories=["shoes", "sale"]),
    ItemEvent(item_id="c", categories=["hats"]),
]
#: (user, item, event type, seconds after T0, recommendation id)
STREAM = [
    ("u1", "a", "view", 1, None),
    ("u1", "b", "click", 2, None),
    ("u1", "c", "purchase", 3, None),
    ("u2", "b", "view", 4, None),
    ("u2", "c", "view", 5, None),
    ("u1", "a", "click", 6, None),      # a repeat: no new co-occurrence
    ("u1", "d", "view", 7, None),       # pairs with u1's last 2 distinct: a, c (not b)
    ("u3", "d", "purchase", 8, None),
    ("u3", "a", "view", 9, None),
    ("u2", "a|d", "impression", 10, "r1"),  # one list of two items shown
    ("u2", "a", "click", 11, "r1"),     # a click on a served list
]


def t(seconds: int, start_ms: int = T0) -> int:
    return start_ms + seconds * 1000


def records() -> list[StreamRecord]:
    result = [StreamRecord("items:0", k, item) for k, item in enumerate(CATALOGUE)]
    for k, (user, item, event_type, second, rid) in enumerate(STREAM):
        if event_type == "impression":
            event = ImpressionEvent(event_id=f"e{k}", user_id=user, event_type=event_type,
                                    item_ids=item.split("|"), timestamp=t(second),
                                    recommendation_id=rid, recommender="personalised")
        else:
            event = InteractionEvent(event_id=f"e{k}", user_id=user, item_id=item,
                                     event_type=event_type, timestamp=t(second),
                                     recommendation_id=rid)
        result.append(StreamRecord("events:0", k, event))
    result.append(StreamRecord("events:0", len(STREAM), None))  # a record sent to dead-letter
    return result


@pytest.fixture
def small_settings(servers: Servers) -> Settings:
    return servers.settings(pair_window=2, history_length=3, vote_items=2,
                             cooccurrence_row_cap=2, sequence_window=2, sequence_votes=2,
                             cooccurrence_half_life_days=None, item_users_kept=2)


def decayed(*terms: tuple[float, int]) -> float:
    return sum(forward_decayed(w, t(s), ANCHOR, HALF_LIFE) for w, s in terms)


async def test_hand_made_stream_gives_exact_state(redis: Redis, small_settings: Settings) -> None:
    result = await StateWriter(redis, small_settings).apply(records(), applied_at_ms=123)
    assert (result.applied, result.duplicates_skipped, result.dead_lettered) == (11, 0, 1)
    assert result.applied_by_type == {"view": 5, "click": 3, "purchase": 2, "impression": 1}

    state = await dump_state(redis, small_settings.key_prefix)
    k = RedisKeys(small_settings.key_prefix)
    # Co-occurrence (pair window 2), rows capped at 2: ties at the cap drop the smallest id.
    # a: b2 c2 d2 -> c d; b: a2 c2; c: a2 b2 d1 -> a b; d: a2 c1
    assert state[k.item_cooccurrence("a")] == {"c": 2.0, "d": 2.0}
    assert state[k.item_cooccurrence("b")] == {"a": 2.0, "c": 2.0}
    assert state[k.item_cooccurrence("c")] == {"a": 2.0, "b": 2.0}
    assert state[k.item_cooccurrence("d")] == {"a": 2.0, "c": 1.0}
    assert state[k.item_user_counts] == {"a": "3", "b": "2", "c": "2", "d": "2"}
    # Sequence window 2, 1/distance: u1 a b c (then a again) d; u2 b c a; u3 d a.
    # a: b1 c.5 d1 -> b d; b: c1+1, a.5; c: d.5, a1; d: a1
    assert state[k.item_next("a")] == {"b": 1.0, "d": 1.0}
    assert state[k.item_next("b")] == {"c": 2.0, "a": 0.5}
    assert state[k.item_next("c")] == {"a": 1.0, "d": 0.5}
    assert state[k.item_next("d")] == {"a": 1.0}

    # Each item's users by their first interaction with it, the newest 2: a's first, u1@1,
    # gives way to u3@9 and u2@11.
    assert state[k.item_users("a")] == {"u3": t(9), "u2": t(11)}
    assert state[k.item_users("b")] == {"u1": t(2), "u2": t(4)}
    assert state[k.item_users("c")] == {"u1": t(3), "u2": t(5)}
    assert state[k.item_users("d")] == {"u1": t(7), "u3": t(8)}

    assert state[k.popularity] == {"a": 6.0, "b": 3.0, "c": 9.0, "d": 9.0}
    expected_trending = {
        "a": decayed((1, 1), (2, 6), (1, 9), (2, 11)), "b": decayed((2, 2), (1, 4)),
        "c": decayed((8, 3), (1, 5)), "d": decayed((1, 7), (8, 8)),
    }
    assert not differences({"t": state[k.trending]}, {"t": expected_trending})
    assert state[k.category_popularity("shoes")] == {"a": 6.0, "b": 3.0}
    assert state[k.category_popularity("sale")] == {"b": 3.0}
    assert state[k.category_popularity("hats")] == {"c": 9.0}
    assert state[k.category_items("shoes")] == {"a", "b"}

    assert not differences({"u1": state[k.user_affinity("u1")]}, {"u1": {
        "a": decayed((1, 1), (2, 6)), "b": decayed((2, 2)), "c": decayed((8, 3)),
        "d": decayed((1, 7))}})
    assert not differences({"u1": state[k.user_category_affinity("u1")]}, {"u1": {
        "shoes": decayed((1, 1), (2, 2), (2, 6)), "sale": decayed((2, 2)),
        "hats": decayed((8, 3))}})
    # History keeps the newest 3 distinct items, each with its latest event type.
    assert state[k.user_recent("u1")] == {"c": t(3), "a": t(6), "d": t(7)}
    assert state[k.user_recent_types("u1")] == {"c": "purchase", "a": "click", "d": "view"}
    assert state[k.user_recent("u2")] == {"b": t(4), "c": t(5), "a": t(11)}

    # The feedback loop: one impression of a list of two, then a click on one of its items.
    assert state[k.user_shown("u2")] == ["a\x1fd"]
    assert await redis.ttl(k.user_shown("u2")) > 0
    assert state[k.recommender_metrics("personalised")] == {
        "impression": "1", "items_shown": "2", "click": "1"}
    assert state[k.recommendation("r1")] == {
        "\x1frecommender": "personalised", "\x1fuser": "u2", "a": "", "d": "",
        "\x1fclick\x1fa": "1"}
    assert await redis.ttl(k.recommendation("r1")) > 0

    assert state[k.user_watermark("u1")] == {"event_time_ms": str(t(7))}
    assert state[k.user_watermark("u2")] == {"event_time_ms": str(t(11))}
    assert state[k.watermark] == {"event_time_ms": str(t(11))}
    assert await redis.hget(k.watermark, "applied_at_ms") == b"123"
    assert state[k.counters] == {"events_applied": "11", "items_applied": "3",
                                 "dead_lettered": "1", "duplicate_events": "0",
                                 "users_erased": "0", "erased_events_dropped": "0"}
    # What erasure would take back out: u2's interactions in order, and the list shown to u2.
    assert [json.loads(entry) for entry in state[k.user_contributions("u2")]] == [
        ["b", "view", t(4)], ["c", "view", t(5)], ["r1"], ["a", "click", t(11)]]
    assert state[k.applied_offsets] == {"items:0": "2", "events:0": str(len(STREAM))}


async def test_redelivered_records_change_nothing(redis: Redis, small_settings: Settings) -> None:
    writer = StateWriter(redis, small_settings)
    await writer.apply(records())
    before = await dump_state(redis, small_settings.key_prefix)
    again = await writer.apply(records())
    assert (again.applied, again.duplicates_skipped) == (0, len(records()))
    assert not differences(before, await dump_state(redis, small_settings.key_prefix))


async def test_overlapping_redelivery_equals_one_clean_pass(redis: Redis, servers: Servers
                                                            ) -> None:
    clean, replayed = (servers.settings(pair_window=2, history_length=5, vote_items=2)
                       for _ in range(2))
    await StateWriter(redis, clean).apply(records())
    writer = StateWriter(redis, replayed)
    everything = records()
    for start, stop in ((0, 6), (3, 10), (0, 12), (8, len(everything))):
        await writer.apply(everything[start:stop])
    assert not differences(
        await dump_state(redis, clean.key_prefix),
        {key.replace(replayed.key_prefix, clean.key_prefix, 1): value
         for key, value in (await dump_state(redis, replayed.key_prefix)).items()})


async def test_catalogue_updates_move_categories_and_availability(
        redis: Redis, settings: Settings) -> None:
    writer = StateWriter(redis, settings)
    k = RedisKeys(settings.key_prefix)
    await writer.apply([StreamRecord("items:0", 0, ItemEvent(item_id="a", categories=["x", "y"]))])
    await writer.apply([StreamRecord("items:0", 1, ItemEvent(
        item_id="a", categories=["y", "z"], tags=["t1"], available=False, title="A"))])
    assert await redis.smembers(k.category_items("x")) == set()
    assert await redis.smembers(k.category_items("z")) == {b"a"}
    assert await redis.smembers(k.unavailable_items) == {b"a"}
    assert await redis.hgetall(k.item_meta("a")) == {
        b"categories": b"y|z", b"tags": b"t1", b"available": b"0", b"title": b"A"}
    await writer.apply([StreamRecord("items:0", 2, ItemEvent(item_id="a"))])
    assert await redis.smembers(k.unavailable_items) == set()


async def test_counts_decay_forward_with_their_half_life(redis: Redis, servers: Servers
                                                         ) -> None:
    """Increments are 2^((t - anchor)/half-life): a pair a year older weighs half as much."""
    settings = servers.settings(cooccurrence_half_life_days=365)
    k = RedisKeys(settings.key_prefix)
    year = 365 * DAY_MS
    stream = [("old", "a", T0), ("old", "b", T0 + 1), ("new", "a", T0 + year),
              ("new", "b", T0 + year + 1)]
    await StateWriter(redis, settings).apply([
        StreamRecord("e:0", n, InteractionEvent(event_id=str(n), user_id=u, item_id=i,
                                                event_type="view", timestamp=ts))
        for n, (u, i, ts) in enumerate(stream)])
    weight = 2 ** ((T0 - ANCHOR) / (365 * DAY_MS))
    old_b, new_b = 2 ** ((T0 + 1 - ANCHOR) / year), 2 ** ((T0 + year + 1 - ANCHOR) / year)
    assert float(await redis.hget(k.item_user_counts, "a")) == pytest.approx(weight * 3)
    assert await redis.zscore(k.item_cooccurrence("a"), "b") == pytest.approx(old_b + new_b)
    assert new_b == pytest.approx(2 * old_b)
    assert await redis.zscore(k.item_next("a"), "b") == pytest.approx(old_b + new_b)


async def test_out_of_order_event_does_not_rewind_history(redis: Redis, settings: Settings
                                                          ) -> None:
    k = RedisKeys(settings.key_prefix)
    newer = InteractionEvent(event_id="1", user_id="u", item_id="a", event_type="purchase",
                             timestamp=t(10))
    older = newer.model_copy(update={"event_id": "2", "event_type": "view", "timestamp": t(5)})
    await StateWriter(redis, settings).apply(
        [StreamRecord("e:0", 0, newer), StreamRecord("e:0", 1, older)])
    assert await redis.zscore(k.user_recent("u"), "a") == t(10)
    assert await redis.hget(k.user_recent_types("u"), "a") == b"purchase"
    assert await redis.hget(k.user_watermark("u"), "event_time_ms") == str(t(10)).encode()


async def test_category_rankings_follow_catalogue_changes(redis: Redis, settings: Settings
                                                         ) -> None:
    """Events before the catalogue entry still count in the category once the item joins."""
    k = RedisKeys(settings.key_prefix)
    writer = StateWriter(redis, settings)
    view = InteractionEvent(event_id="1", user_id="u", item_id="a", event_type="purchase",
                            timestamp=t(1))
    await writer.apply([StreamRecord("e:0", 0, view)])
    await writer.apply([StreamRecord("i:0", 0, ItemEvent(item_id="a", categories=["x"]))])
    assert await redis.zrange(k.category_popularity("x"), 0, -1, withscores=True) == [(b"a", 8.0)]
    assert await redis.zscore(k.category_trending("x"), "a") == await redis.zscore(k.trending, "a")
    await writer.apply([StreamRecord("e:0", 1, view.model_copy(update={"event_id": "2",
                                                                       "user_id": "v"}))])
    assert await redis.zscore(k.category_popularity("x"), "a") == 16.0
    await writer.apply([StreamRecord("i:0", 1, ItemEvent(item_id="a", categories=["y"]))])
    assert await redis.zcard(k.category_popularity("x")) == 0
    assert await redis.zcard(k.category_trending("x")) == 0
    assert await redis.zscore(k.category_popularity("y"), "a") == 16.0


def view(event_id: str, user: str, item: str, second: int = 1,
         recommendation_id: str | None = None, event_type: str = "view", start_ms: int = T0
         ) -> InteractionEvent:
    return InteractionEvent(event_id=event_id, user_id=user, item_id=item,
                            event_type=event_type, timestamp=t(second, start_ms),
                            recommendation_id=recommendation_id)


async def test_an_event_id_resent_for_the_same_user_counts_once(redis: Redis, settings: Settings
                                                                ) -> None:
    k = RedisKeys(settings.key_prefix)
    writer = StateWriter(redis, settings)
    first = await writer.apply([StreamRecord("e:0", 0, view("x", "u", "a")),
                                StreamRecord("e:0", 1, view("x", "u", "a", second=2))])
    later = await writer.apply([StreamRecord("e:0", 2, view("x", "u", "b"))])
    other_user = await writer.apply([StreamRecord("e:0", 3, view("x", "v", "a"))])
    assert (first.applied, first.duplicate_events) == (1, 1)
    assert (later.applied, later.duplicate_events) == (0, 1)
    assert (other_user.applied, other_user.duplicate_events) == (1, 0)  # ids are per user
    assert await redis.zscore(k.popularity, "a") == 2.0
    assert await redis.zscore(k.popularity, "b") is None
    assert await redis.hget(k.counters, "duplicate_events") == b"2"
    assert 0 < await redis.pttl(k.user_event_ids("u")) <= settings.event_id_window_seconds * 1000


async def test_event_ids_are_forgotten_after_the_window(redis: Redis, servers: Servers) -> None:
    settings = servers.settings(event_id_window_seconds=10)
    writer = StateWriter(redis, settings)
    await writer.apply([StreamRecord("e:0", 0, view("x", "u", "a"))], applied_at_ms=1_000_000)
    resent = await writer.apply([StreamRecord("e:0", 1, view("x", "u", "a"))],
                                applied_at_ms=1_000_000 + 10_001)
    assert (resent.applied, resent.duplicate_events) == (1, 0)


async def test_a_new_log_restarts_the_guard_instead_of_skipping_it(redis: Redis,
                                                                    settings: Settings) -> None:
    """A broker that lost its data numbers offsets from 0 again: its epoch record (a new log
    id) makes the guard start over, while a redelivered epoch record changes nothing."""
    writer = StateWriter(redis, settings)
    k = RedisKeys(settings.key_prefix)
    old_log = [StreamRecord("e:0", 0, LogEpoch("log-1")),
               *(StreamRecord("e:0", n, view(f"a{n}", "u", f"i{n}")) for n in range(1, 6))]
    assert (await writer.apply(old_log)).applied == 5
    assert (await writer.apply(old_log[:3])).applied == 0  # redelivered, same log
    new_log = [StreamRecord("e:0", 0, LogEpoch("log-2")),
               *(StreamRecord("e:0", n, view(f"b{n}", "u", f"j{n}")) for n in range(1, 3))]
    result = await writer.apply(new_log)
    assert (result.applied, result.duplicates_skipped) == (2, 0)
    assert (await writer.apply(new_log)).applied == 0
    assert await redis.hget(k.log_epochs, "e:0") == b"log-2"
    assert await redis.hget(k.applied_offsets, "e:0") == b"2"


async def test_feedback_counts_once_per_list_item_and_type_and_cannot_be_forged(
        redis: Redis, settings: Settings) -> None:
    writer = StateWriter(redis, settings)
    k = RedisKeys(settings.key_prefix)

    def shown(event_id: str, items: list[str], recommender: str, list_id: str = "r1"
              ) -> ImpressionEvent:
        return ImpressionEvent(event_id=event_id, user_id="u", event_type="impression",
                               item_ids=items, timestamp=t(1), recommendation_id=list_id,
                               recommender=recommender)

    await writer.apply([
        StreamRecord("e:0", 0, shown("s1", ["a", "b"], "personalised")),
        StreamRecord("e:0", 1, view("c1", "u", "a", recommendation_id="r1", event_type="click")),
        StreamRecord("e:0", 2, view("c2", "u", "a", recommendation_id="r1", event_type="click")),
        StreamRecord("e:0", 3, view("c3", "u", "z", recommendation_id="r1", event_type="click")),
        StreamRecord("e:0", 4, view("c4", "u", "b", recommendation_id="nope",
                                    event_type="click")),
        StreamRecord("e:0", 5, shown("s2", ["z"], "trending")),  # re-mapping r1: ignored
        StreamRecord("e:0", 6, view("c5", "u", "z", recommendation_id="r1", event_type="click")),
        StreamRecord("e:0", 7, view("p1", "u", "a", recommendation_id="r1",
                                    event_type="purchase")),
        # someone else's click on u's list counts for no one
        StreamRecord("e:0", 8, view("c6", "other", "b", recommendation_id="r1",
                                    event_type="click")),
        # an app's own list is no list to count on, and cannot take a served list's id
        StreamRecord("e:0", 9, shown("s3", ["a"], "unattributed", "r2")),
        StreamRecord("e:0", 10, view("c7", "u", "a", recommendation_id="r2",
                                     event_type="click")),
        StreamRecord("e:0", 11, shown("s4", ["a"], "trending", "r2")),
    ])
    assert await redis.hgetall(k.recommender_metrics("personalised")) == {
        b"impression": b"1", b"items_shown": b"2", b"click": b"1", b"purchase": b"1"}
    assert await redis.hgetall(k.recommender_metrics("trending")) == {
        b"impression": b"1", b"items_shown": b"1"}
    assert not await redis.exists(k.recommender_metrics("unattributed"))
    assert await redis.hget(k.recommendation("r1"), "\x1frecommender") == b"personalised"
    assert await redis.hget(k.recommendation("r2"), "\x1frecommender") == b"trending"


async def test_lua_forward_decay_mirrors_python(redis: Redis) -> None:
    snippet = LUA.joinpath("forward_decay.lua").read_text() + (
        "\nreturn tostring(forward_decayed(tonumber(ARGV[1]), tonumber(ARGV[2]), "
        "tonumber(ARGV[3]), tonumber(ARGV[4])))")
    for weight, event_ms, anchor_ms, half_life in ((8.0, T0, ANCHOR, HALF_LIFE),
                                                   (1.0, ANCHOR - 400 * DAY_MS, ANCHOR, 365.0 *
                                                    DAY_MS), (2.5, T0 + 123, ANCHOR, 7.0 * DAY_MS)):
        lua = float(await redis.eval(snippet, 0, weight, event_ms, anchor_ms, half_life))
        assert lua == pytest.approx(forward_decayed(weight, event_ms, anchor_ms, half_life),
                                    rel=1e-12)


async def test_a_batch_is_split_by_commands_and_gives_the_same_state(redis: Redis,
                                                                     servers: Servers) -> None:
    """A budget of one command per call: every record takes its own call (a record is never
    cut), and the state is that of one unbounded call (with rows below their cap: a cap binds
    at the end of each call, as at the end of each worker batch)."""
    whole, split = (servers.settings(pair_window=2, history_length=5, vote_items=2,
                                     max_commands_per_script=budget)
                    for budget in (100_000, 1))
    calls = []
    writer = StateWriter(redis, split)
    original = writer._script

    async def counted(**kwargs: object) -> object:
        calls.append(kwargs)
        return await original(**kwargs)

    writer._script = counted  # type: ignore[method-assign]
    result = await writer.apply(records(), applied_at_ms=123)
    await StateWriter(redis, whole).apply(records(), applied_at_ms=123)
    assert len(calls) == len(records())
    assert (result.applied, result.dead_lettered) == (11, 1)
    assert result.applied_by_type == {"view": 5, "click": 3, "purchase": 2, "impression": 1}
    assert not differences(
        await dump_state(redis, whole.key_prefix),
        {key.replace(split.key_prefix, whole.key_prefix, 1): value
         for key, value in (await dump_state(redis, split.key_prefix)).items()})


async def test_per_user_state_is_bounded_and_expires(redis: Redis, servers: Servers) -> None:
    settings = servers.settings(affinity_items_kept=3, user_state_ttl_days=2)
    k = RedisKeys(settings.key_prefix)
    await StateWriter(redis, settings).apply([
        StreamRecord("e:0", n, view(f"x{n}", "u", f"i{n}", second=n,
                                    event_type="purchase" if n == 0 else "view"))
        for n in range(5)])
    # The purchase (weight 8) and the two newest views are kept; the older views are not.
    assert set(await redis.zrange(k.user_affinity("u"), 0, -1)) == {b"i0", b"i3", b"i4"}
    for key in (k.user_recent("u"), k.user_recent_types("u"), k.user_affinity("u"),
                k.user_category_affinity("u"), k.user_watermark("u"), k.user_event_ids("u")):
        if await redis.exists(key):
            assert 0 < await redis.ttl(key) <= 2 * 86400, key


async def test_an_items_users_expire_as_a_users_own_state_does(
        redis: Redis, servers: Servers) -> None:
    settings = servers.settings(user_state_ttl_days=2, shared_after_items=1)
    await StateWriter(redis, settings).apply([StreamRecord("e:0", 0, view("a", "u1", "i"))])
    users = RedisKeys(settings.key_prefix).item_users("i")
    assert await redis.zrange(users, 0, -1) == [b"u1"]
    assert 0 < await redis.ttl(users) <= 2 * 86400


async def test_a_pair_across_sessions_adds_less_than_one_within_a_session(
        redis: Redis, small_settings: Settings) -> None:
    # u: a, then b a second later (one session), then c two hours later (a new one)
    settings = small_settings.model_copy(update={"earlier_session_pair": 0.25})
    await StateWriter(redis, settings).apply([
        StreamRecord("events:0", k, view(f"s{k}", "u", item, second=second))
        for k, (item, second) in enumerate([("a", 1), ("b", 2), ("c", 2 + 7200)])])
    k = RedisKeys(settings.key_prefix)
    state = await dump_state(redis, settings.key_prefix)
    assert state[k.item_cooccurrence("a")] == {"b": 1.0, "c": 0.25}
    assert state[k.item_cooccurrence("b")] == {"a": 1.0, "c": 0.25}
    assert state[k.item_cooccurrence("c")] == {"a": 0.25, "b": 0.25}
    # next-item rules do not look at sessions
    assert state[k.item_next("a")] == {"b": 1.0, "c": 0.5}
    assert state[k.item_next("b")] == {"c": 1.0}


@pytest.mark.parametrize("case", SESSION_CASES, ids=lambda case: case.name)
async def test_a_new_items_pairs_weigh_by_the_session_rule(
        redis: Redis, servers: Servers, case: SessionCase) -> None:
    # the user's items in time order, then "new" (possibly late) at case.at
    settings = servers.settings(session_gap_minutes=GAP_MINUTES, earlier_session_pair=0.25,
                                cooccurrence_half_life_days=None)
    items = [f"i{k}" for k in range(len(case.times))]
    timeline = [*sorted(zip(case.times, items, strict=True)), (case.at, "new")]
    await StateWriter(redis, settings).apply([
        StreamRecord("events:0", k, InteractionEvent(
            event_id=f"s{k}", user_id="u", item_id=item, event_type="view",
            timestamp=T0 + minute * 60_000)) for k, (minute, item) in enumerate(timeline)])
    row = (await dump_state(redis, settings.key_prefix))[
        RedisKeys(settings.key_prefix).item_cooccurrence("new")]
    assert row == {item: 1.0 if inside else 0.25
                   for item, inside in zip(items, case.inside, strict=True)}


async def test_a_batch_that_gets_through_clears_its_partitions_stall(
        redis: Redis, servers: Servers) -> None:
    # recorded by another (since stopped) worker process: the stall is the partition's, and
    # whoever applies its records next says it flows again
    settings = servers.settings()
    writer = StateWriter(redis, settings)
    await writer.record_stall(["events:0", "events:1"], "applying the batch failed")
    await writer.apply([StreamRecord("events:0", 0, view("c0", "u", "a"))])
    assert await redis.hgetall(RedisKeys(settings.key_prefix).stalled_partitions) == {
        b"events:1": b"applying the batch failed"}


async def test_a_writer_with_other_learning_settings_is_refused_before_it_changes_anything(
        redis: Redis, servers: Servers) -> None:
    first = servers.settings()
    await StateWriter(redis, first).apply([StreamRecord("events:0", 0, view("l0", "u", "a"))])
    before = await dump_state(redis, first.key_prefix)
    k = RedisKeys(first.key_prefix)
    assert json.loads(await redis.get(k.learning_settings))["earlier_session_pair"] == 0.3
    other = first.model_copy(update={"earlier_session_pair": 1.0, "pair_window": 10,
                                     "id_hmac_key": SecretStr("a key that makes other pseudonyms")})
    with pytest.raises(LearningSettingsChanged) as refused:
        await StateWriter(redis, other).apply(
            [StreamRecord("events:0", 1, view("l1", "u", "b", second=2))])
    assert "earlier_session_pair: learned with 0.3, now 1.0" in str(refused.value)
    assert "pair_window: learned with 20, now 10" in str(refused.value)
    assert "id_hmac_key_fingerprint: another one" in str(refused.value)
    assert other.id_hmac_key_fingerprint not in str(refused.value)  # /readyz shows it
    assert await dump_state(redis, first.key_prefix) == before
    # settings that do not shape what is learned may differ (the command budget, the reads)
    same = first.model_copy(update={"max_commands_per_script": 50, "vote_items": 5})
    assert (await StateWriter(redis, same).apply(
        [StreamRecord("events:0", 1, view("l1", "u", "b", second=2))])).applied == 1


async def test_a_writer_may_add_an_event_type_but_not_change_or_drop_one(
        redis: Redis, servers: Servers) -> None:
    """No event of a new type was learned, so erasure stays exact: the record takes the type
    on, and from then a writer without it (it would dead-letter those events) is refused."""
    first = servers.settings()
    k = RedisKeys(first.key_prefix)
    await StateWriter(redis, first).apply([StreamRecord("events:0", 0, view("w0", "u", "a"))])
    wider = first.model_copy(update={"event_weights": {**first.event_weights, "wishlist": 3.0}})
    assert (await StateWriter(redis, wider).apply([StreamRecord("events:0", 1, view(
        "w1", "u", "b", second=2, event_type="wishlist"))])).applied == 1
    assert json.loads(await redis.get(k.learning_settings))["event_weights"]["wishlist"] == 3
    for narrower in (first, wider.model_copy(update={"event_weights": {
            **wider.event_weights, "view": 2.0}})):
        with pytest.raises(LearningSettingsChanged, match="event_weights"):
            await StateWriter(redis, narrower).apply(
                [StreamRecord("events:0", 2, view("w2", "u", "c", second=3))])


async def test_learning_settings_compare_by_value_and_a_newer_version_adds_to_the_record(
        redis: Redis, servers: Servers, monkeypatch: pytest.MonkeyPatch) -> None:
    settings = servers.settings()
    k = RedisKeys(settings.key_prefix)
    # as an older version recorded them: fewer settings, numbers written as integers
    await redis.set(k.learning_settings, json.dumps(
        {"pair_window": 20, "session_gap_minutes": 30, "event_weights": {
            "view": 1, "click": 2, "add_to_cart": 4, "purchase": 8}}))
    # this writer's settings come from the environment, as a worker's do
    for name, value in settings.as_environment().items():
        monkeypatch.setenv(name, value)
    from_environment = Settings()
    assert (await StateWriter(redis, from_environment).apply(
        [StreamRecord("events:0", 0, view("n0", "u", "a"))])).applied == 1
    assert json.loads(await redis.get(k.learning_settings)) == json.loads(
        orjson.dumps(settings.learning_settings))


#: Users a and c are honest neighbours; b is to be forgotten: b forms pairs and next-item
#: rules with their items, brings "only-b" into their rows, is shown a list and clicks it.
ERASURE_CATALOGUE = [ItemEvent(item_id=i, categories=[c]) for i, c in
                     (("x", "shoes"), ("y", "shoes"), ("z", "hats"), ("only-b", "hats"))]
ERASURE_STREAM = [("a", "x", "view"), ("b", "x", "view"), ("c", "y", "view"),
                  ("b", "y", "purchase"), ("a", "y", "click"), ("b", "only-b", "view"),
                  ("c", "x", "view"), ("b", "z", "add_to_cart"), ("a", "z", "view"),
                  ("b", "x", "click"), ("c", "z", "purchase"), ("b", "shown", "impression"),
                  ("b", "x", "purchase")]
#: State that names no user and is not a shared aggregate: positions, counters, the audit.
NOT_COMPARED = (":counters", ":applied_offsets", ":watermark", ":erasures", ":erased_users",
                ":recommenders", ":metrics")


def erasure_records(without: str | None = None, seconds: list[int] | None = None,
                    start_ms: int = T0) -> list[StreamRecord]:
    """The erasure stream, event k stamped at second k or at `seconds[k]` after `start_ms`."""
    records = [StreamRecord("items:0", k, item) for k, item in enumerate(ERASURE_CATALOGUE)]
    for k, (user, item, kind) in enumerate(ERASURE_STREAM):
        second = k if seconds is None else seconds[k]
        if user == without:
            continue
        if kind == "impression":
            event: object = ImpressionEvent(
                event_id=f"e{k}", user_id=user, event_type="impression", item_ids=["x", "z"],
                timestamp=t(second, start_ms), recommendation_id="list-b",
                recommender="personalised")
        else:
            event = view(f"e{k}", user, item, second=second, event_type=kind,
                         recommendation_id="list-b" if k == 12 else None, start_ms=start_ms)
        records.append(StreamRecord("events:0", k, event))
    return records


def forget(user: str, offset: int, second: int = 100, start_ms: int = T0) -> StreamRecord:
    return StreamRecord("events:0", offset, ForgetRequest(
        event_id=f"erase-{user}-{offset}", user_id=user, event_type="forget",
        timestamp=t(second, start_ms)))


async def comparable(redis: Redis, prefix: str, renamed_to: str) -> dict[str, object]:
    return {key.replace(prefix, renamed_to, 1): value
            for key, value in (await dump_state(redis, prefix)).items()
            if not key.endswith(NOT_COMPARED)}


#: A session gap of 1.5 s makes each of the erasure stream's items (2 s apart or more) its
#: user's own session, so every pair is across sessions.
SHORT_SESSIONS = 1.5 / 60
#: With a gap of 2.5 s and these times, b's sessions mix: x@1, then y@6 and only-b@7 (a new
#: session: b's x-y pair, which a and c share, counts less), z late @2 (in x's session, not
#: y's), x again @15; a's and c's items are all apart.
MIXED_SESSIONS = [0, 1, 2, 6, 9, 7, 12, 2, 18, 15, 24, 20, 21]


@pytest.mark.parametrize(("budget", "session_gap_minutes", "seconds"),
                         [(100_000, 30, None), (1, 30, None), (100_000, SHORT_SESSIONS, None),
                          (1, 2.5 / 60, MIXED_SESSIONS)],
                         ids=["one call", "a call per command", "short sessions",
                              "mixed sessions and a late event"])
async def test_erasure_leaves_the_state_of_a_stream_without_the_user(
        redis: Redis, servers: Servers, budget: int, session_gap_minutes: float,
        seconds: list[int] | None) -> None:
    erased, never = (servers.settings(max_commands_per_script=budget,
                                      session_gap_minutes=session_gap_minutes)
                     for _ in range(2))
    await StateWriter(redis, erased).apply([*erasure_records(seconds=seconds),
                                            forget("b", len(ERASURE_STREAM))])
    await StateWriter(redis, never).apply(erasure_records(without="b", seconds=seconds))
    assert not differences(await comparable(redis, erased.key_prefix, "p"),
                           await comparable(redis, never.key_prefix, "p"))
    k = RedisKeys(erased.key_prefix)
    assert await redis.zscore(k.item_cooccurrence("x"), "only-b") is None
    assert not await redis.exists(k.recommendation("list-b"))
    audit = json.loads(await redis.hget(k.erasures, f"erase-b-{len(ERASURE_STREAM)}"))
    assert audit["user"] == pseudonym("b") and audit["contributions_removed"] == 7


async def test_at_the_decay_horizon_scores_stay_finite_and_an_erasure_is_exact(
        redis: Redis, servers: Servers) -> None:
    """Events stamped at the last time the settings accept (200 one-day half-lives after the
    anchor): stored weights near 2^200, raised to the power 4 by a count similarity, stay
    finite, and taking a user out subtracts exactly (past ~1024 half-lives, scores were inf
    and an erasure's subtraction NaN, which Redis refused: the worker stalled)."""
    horizon = clock_ms() + 2 * 3600 * 1000  # past the hour of clock skew events may have
    decay = {"affinity_half_life_days": 1, "trending_half_life_days": 1,
             "cooccurrence_half_life_days": 1, "decay_anchor_ms": horizon - 200 * DAY_MS,
             "similarity": "count", "similarity_exponent": 4}
    erased, never = (servers.settings(**decay) for _ in range(2))
    assert erased.decay_horizon[0] == horizon
    start = horizon - 20_000  # the stream's 13 events, a second apart, end before it
    newcomer = StreamRecord("events:0", 100, view("e-d", "d", "x", 15, start_ms=start))
    await StateWriter(redis, erased).apply([*erasure_records(start_ms=start),
                                            forget("b", len(ERASURE_STREAM), 20, start),
                                            newcomer])
    await StateWriter(redis, never).apply([*erasure_records(without="b", start_ms=start),
                                           newcomer])
    state = await comparable(redis, never.key_prefix, "p")
    assert not differences(await comparable(redis, erased.key_prefix, "p"), state)
    scores = [float(v) for value in state.values() if isinstance(value, dict)
              for v in value.values() if isinstance(v, float | int)]
    assert len(scores) > 20
    assert all(math.isfinite(score) for score in scores)
    served = await Recommender(StateReader(redis, RedisKeys(never.key_prefix)), never
                               ).for_user("d", 5, now_ms=horizon)
    assert {(item.item_id, item.source in ("co-occurrence", "sequence"))
            for item in served.items[:2]} == {("y", True), ("z", True)}
    assert all(math.isfinite(item.score) and item.score > 0 for item in served.items)


async def test_an_erasure_interrupted_by_a_crash_ends_exact_when_redelivered(
        redis: Redis, servers: Servers) -> None:
    erased, never = (servers.settings(max_commands_per_script=3) for _ in range(2))
    writer = StateWriter(redis, erased)
    await writer.apply(erasure_records())
    request = forget("b", len(ERASURE_STREAM))
    for _ in range(2):  # two calls' worth of progress, then the worker dies
        await writer._script(args=[orjson.dumps(dict(writer._config, applied_at_ms=5)),
                                   orjson.dumps([_encode(request)])])
    assert await redis.exists(RedisKeys(erased.key_prefix).erasure("b"))
    await writer.apply([request])  # redelivered after the restart
    await writer.apply([request])  # and once more: nothing happens twice
    await StateWriter(redis, never).apply(erasure_records(without="b"))
    assert not differences(await comparable(redis, erased.key_prefix, "p"),
                           await comparable(redis, never.key_prefix, "p"))


async def test_after_an_erasure_old_events_are_dropped_and_new_ones_start_afresh(
        redis: Redis, settings: Settings) -> None:
    writer = StateWriter(redis, settings)
    k = RedisKeys(settings.key_prefix)
    await writer.apply([*erasure_records(), forget("b", 100, second=50)])
    late = await writer.apply([StreamRecord("events:0", 101, view("old", "b", "y", second=40)),
                               StreamRecord("events:0", 102, view("new", "b", "z", second=60))])
    assert late.applied == 1
    assert await redis.hget(k.counters, "erased_events_dropped") == b"1"
    assert await redis.zrange(k.user_recent("b"), 0, -1) == [b"z"]
    again = await writer.apply([forget("b", 103, second=70)])  # idempotent: nothing left
    assert not await redis.exists(k.user_recent("b"))
    assert again.applied == 0


async def test_a_users_next_new_item_judges_the_weightings_lists_once(
        redis: Redis, servers: Servers) -> None:
    settings = servers.settings(blend_evidence_horizon=4)  # earlier counts kept at 3/4
    writer = StateWriter(redis, settings)
    k = RedisKeys(settings.key_prefix)

    def shown(event_id: str, weighting_lists: dict[str, list[str]]) -> ImpressionEvent:
        return ImpressionEvent(event_id=event_id, user_id="u", event_type="impression",
                               item_ids=["x"], timestamp=t(1), recommender="personalised",
                               weighting_lists=weighting_lists)

    stream = [
        view("v1", "u", "a"),               # nothing waits: no trial
        shown("s1", {"1:0": ["b", "c"], "0:1": ["d"], "1:1": ["d", "b"]}),
        view("v2", "u", "a"),               # not new to u: the lists keep waiting
        view("v3", "u", "d"),               # judges: 0:1 and 1:1 held d
        view("v4", "u", "b"),               # the lists were used up: no trial
        shown("s2", {"1:0": ["c"], "0:1": ["e"]}),
        shown("s3", {"1:0": ["b", "e"], "0:1": ["f"]}),  # the newest list replaces s2's
        view("v5", "u", "e"),               # judges s3's: 1:0 held e
    ]
    records = [StreamRecord("e:0", offset, event) for offset, event in enumerate(stream)]
    await writer.apply(records)
    await writer.apply(records)  # redelivered: judged once
    assert {f.decode(): float(v) for f, v in (await redis.hgetall(k.blend_evidence)).items()
            } == {"\x1ftrials": 1 * 0.75 + 1, "1:0": 0 * 0.75 + 1, "0:1": 1 * 0.75 + 0,
                  "1:1": 1 * 0.75}
    assert not await redis.exists(k.user_weighting_lists("u"))
