"""The new-user rule and the once-per-type rule, exactly, on the state writer: fake users
with one or two items move no shared aggregate, a user joins them with their whole history
replayed as if shared from the start, and one user resending a purchase counts once."""

import pytest
from redis.asyncio import Redis

from stream_app.state_writer import StateWriter, StreamRecord
from streamrec.contract import ForgetRequest, InteractionEvent, RedisKeys, forget_request
from tests.support.servers import Servers
from tests.support.state import differences, dump_state

T0 = 1_700_000_000_000
NEW_USER_RULE = 3  # the default of shared_after_items


def event(n: int, user: str, item: str, event_type: str = "view") -> InteractionEvent:
    return InteractionEvent(event_id=f"e{n}", user_id=user, item_id=item,
                            event_type=event_type, timestamp=T0 + n * 1000)


def records(events: list[InteractionEvent | ForgetRequest]) -> list[StreamRecord]:
    return [StreamRecord("events:0", offset, e) for offset, e in enumerate(events)]


async def shared_state(redis: Redis, prefix: str) -> dict:
    """Everything but the users' own keys and the bookkeeping (the settings it was learned
    with among them), named without the prefix: what the users' events moved for everyone."""
    keys = RedisKeys(prefix)
    return {key.removeprefix(prefix): value
            for key, value in (await dump_state(redis, prefix)).items()
            if not key.startswith(f"{prefix}:user:") and key not in (
                keys.applied_offsets, keys.counters, keys.watermark, keys.learning_settings)}


async def applied(redis: Redis, servers: Servers, events: list, **settings: object) -> str:
    chosen = servers.settings(**settings)
    await StateWriter(redis, chosen).apply(records(events), applied_at_ms=T0 + 10**7)
    return chosen.key_prefix


async def test_a_user_with_two_items_moves_nothing_shared(redis: Redis, servers: Servers
                                                          ) -> None:
    honest = [event(1, "h", "boots"), event(2, "h", "laces"), event(3, "h", "socks")]
    fake = [event(10 + 2 * n + k, f"fake{n}", item)
            for n in range(50) for k, item in enumerate(("boots", "spam"))]
    before = await applied(redis, servers, honest, shared_after_items=NEW_USER_RULE)
    after = await applied(redis, servers, honest + fake, shared_after_items=NEW_USER_RULE)
    assert differences(await shared_state(redis, before), await shared_state(redis, after)) == []
    # the same fake users, shared from the first item, put spam beside boots: the rule matters
    unguarded = await applied(redis, servers, honest + fake, shared_after_items=1)
    beside_boots = RedisKeys(unguarded).item_cooccurrence("boots")
    assert await redis.zrevrange(beside_boots, 0, 0) == [b"spam"]
    # and each fake user's own history still knows what they did
    assert await redis.zscore(RedisKeys(after).user_recent("fake0"), "spam") == T0 + 11_000


@pytest.mark.parametrize("session_gap_minutes", [30, 1.5 / 60],
                         ids=["one session", "sessions split where items are 2 s apart"])
async def test_the_third_item_shares_the_whole_history_as_if_from_the_start(
        redis: Redis, servers: Servers, session_gap_minutes: float) -> None:
    stream = [event(1, "u", "a"), event(2, "v", "a"), event(3, "u", "b", "purchase"),
              event(4, "u", "a", "click"), event(5, "v", "b"), event(6, "u", "c"),
              event(7, "v", "c"), event(8, "u", "d")]
    late = await applied(redis, servers, stream, shared_after_items=NEW_USER_RULE,
                         session_gap_minutes=session_gap_minutes)
    at_once = await applied(redis, servers, stream, shared_after_items=1,
                            session_gap_minutes=session_gap_minutes)
    assert differences(await shared_state(redis, late), await shared_state(redis, at_once)) == []
    assert await redis.hget(RedisKeys(late).item_user_counts, "c") is not None


async def test_many_events_on_few_items_also_join_after_the_event_bound(
        redis: Redis, servers: Servers) -> None:
    stream = [event(n, "u", "a" if n % 2 else "b") for n in range(1, 11)]
    prefix = await applied(redis, servers, stream, shared_after_items=NEW_USER_RULE,
                           shared_after_events=10)
    assert await redis.zscore(RedisKeys(prefix).popularity, "a") == 1.0  # a view, once
    held = await applied(redis, servers, stream[:9], shared_after_items=NEW_USER_RULE,
                         shared_after_events=10)
    assert await redis.zcard(RedisKeys(held).popularity) == 0


async def test_one_user_resending_a_purchase_counts_once_per_type(
        redis: Redis, servers: Servers) -> None:
    weights = servers.settings().event_weights
    stream = [event(n, "pump", "spam", "purchase") for n in range(1, 1000)]
    stream += [event(1000, "pump", "spam", "view")]
    prefix = await applied(redis, servers, stream)
    keys = RedisKeys(prefix)
    assert await redis.zscore(keys.popularity, "spam") == weights["purchase"] + weights["view"]
    # the user's own affinity still grows with every event (decayed: 2023 events, 2024 anchor)
    once = await applied(redis, servers, stream[:1])
    assert await redis.zscore(keys.user_affinity("pump"), "spam") > 900 * await redis.zscore(
        RedisKeys(once).user_affinity("pump"), "spam")


async def test_erasing_a_user_who_never_shared_leaves_the_shared_state_alone(
        redis: Redis, servers: Servers) -> None:
    honest = [event(1, "h", "boots"), event(2, "h", "laces"), event(3, "h", "socks")]
    newcomer = [event(10, "new", "boots"), event(11, "new", "spam")]
    erase = forget_request("new")
    alone = await applied(redis, servers, honest, shared_after_items=NEW_USER_RULE)
    erased = await applied(redis, servers, [*honest, *newcomer, erase],
                           shared_after_items=NEW_USER_RULE)
    audit = {RedisKeys("").erased_users, RedisKeys("").erasures}
    left = await shared_state(redis, erased)
    assert set(left) - set(await shared_state(redis, alone)) == audit
    assert differences(await shared_state(redis, alone),
                       {key: value for key, value in left.items() if key not in audit}) == []
    assert [key async for key in redis.scan_iter(match=f"{erased}:user:new:*")] == []
