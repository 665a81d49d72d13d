"""The lists the read path serves over a fixed synthetic state, against the lists recorded
before: a change made for speed must not move quality. Over 2,300 requests of every kind
(personalised with and without filters, caps and penalised impressions, within a session and
not, served with and without the neighbours, similar, trending, popular), the same ids in the
same order, from the same source with the same reason, and scores within 1e-9 relative; and
for each personalised list, what every judged weighting would have served (its shadow list).

A change meant to move what is served records the lists again, on purpose, and says so in
its commit: `STREAMREC_RECORD_SERVED_LISTS=1 pytest tests/integration/test_served_lists.py`.
"""

import gzip
import json
import math
import os
from pathlib import Path

from redis.asyncio import Redis

from serving.recommender import RecommendationList, Recommender
from serving.state_reader import StateReader
from stream_app.state_writer import StateWriter, StreamRecord
from streamrec.contract import ImpressionEvent, RedisKeys, Settings
from streamrec.datasets import events, make_world
from tests.support.servers import Servers

RECORDED = Path(__file__).parent / "served_lists.json.gz"
EVENTS, BATCH, USERS = 6_000, 200, 120
RELATIVE_TOLERANCE = 1e-9


def as_record(served: RecommendationList) -> list[list[object]]:
    return [[item.item_id, item.score, item.source, item.reason] for item in served.items]


async def served_lists(redis: Redis, settings: Settings) -> dict[str, list[list[object]]]:
    """Every request's list, by a name that says what was asked."""
    world = make_world(users=USERS, categories=6, items_per_category=60, seed=5)
    writer = StateWriter(redis, settings)
    await writer.apply([StreamRecord("items:0", k, item)
                        for k, item in enumerate(world.catalogue())])
    stream = [StreamRecord("events:0", k, event) for k, event in
              enumerate(events(world, EVENTS, start_ms=settings.decay_anchor_ms, seed=9))]
    for start in range(0, len(stream), BATCH):
        await writer.apply(stream[start:start + BATCH])
    now = stream[-1].payload.timestamp + 3_600_000  # every user starts a new session
    within = stream[-1].payload.timestamp + 60_000  # the latest users continue theirs
    reader = StateReader(redis, RedisKeys(settings.key_prefix))
    recommender = Recommender(reader, settings)
    with_neighbours = [  # each item through 2 of them (the default), and through 1
        Recommender(reader, settings.model_copy(update={"neighbours_weight": 2.0,
                                                        "neighbour_support": support}))
        for support in (2, 1)]
    users, items = world.users, [item.item_id for item in world.catalogue()]
    categories = world.categories

    # a third of the users were shown their first list three times and took none of it
    ignored = []
    for k, user in enumerate(users[::3]):
        shown = (await recommender.for_user(user, 10, now_ms=now)).items
        ignored += [StreamRecord("events:1", 3 * k + repeat, ImpressionEvent(
            event_id=f"shown-{user}-{repeat}", user_id=user, event_type="impression",
            item_ids=[item.item_id for item in shown], timestamp=now,
            recommender="personalised")) for repeat in range(3)]
    await writer.apply(ignored)

    lists: dict[str, list[list[object]]] = {}
    for k in range(1_200):
        user, n = users[k % len(users)], 50 if k % 10 == 0 else 10
        options: dict[str, object] = {}
        if k % 7 == 1:
            options["category"] = categories[k % len(categories)]
        if k % 5 == 2:
            options["exclude"] = items[k % len(items):k % len(items) + 20]
        if k % 4 == 3:
            options["max_per_category"] = 2
        asked_at = within if k % 2 else now
        served = await recommender.for_user(user, n, now_ms=asked_at, **options)
        name = f"personalised {user} n={n} {sorted(options.items())} at {asked_at} #{k}"
        lists[name] = as_record(served)
        lists[f"shadow lists of {name}"] = [[label, *ids] for label, ids
                                            in sorted(served.weighting_lists.items())]
    for k in range(300):
        user, n = users[(k * 5) % len(users)], 50 if k % 10 == 0 else 10
        options = {"category": categories[k % len(categories)]} if k % 7 == 1 else {}
        served = await with_neighbours[k % 2].for_user(user, n, now_ms=now, **options)
        lists[f"personalised, the neighbours served, {user} n={n} {options} #{k}"
              ] = as_record(served)
    for k in range(500):
        item, n = items[(k * 7) % len(items)], 50 if k % 10 == 0 else 10
        category = categories[k % len(categories)] if k % 6 == 1 else None
        served = await recommender.similar_items(item, n, category=category, now_ms=now)
        lists[f"similar {item} n={n} category={category} #{k}"] = as_record(served)
    for k in range(150):
        category = categories[k % len(categories)] if k % 2 else None
        user = users[k % len(users)] if k % 3 == 0 else None
        n = (10, 50, 200)[k % 3]
        trending = await recommender.trending(n, category=category, user_id=user, now_ms=now)
        lists[f"trending n={n} category={category} user={user} #{k}"] = as_record(trending)
        popular = await recommender.popular(n, category=category, user_id=user)
        lists[f"popular n={n} category={category} user={user} #{k}"] = as_record(popular)
    return lists


async def test_the_served_lists_are_the_recorded_ones(redis: Redis, servers: Servers) -> None:
    settings = servers.settings(shared_after_items=Settings().shared_after_items)
    lists = await served_lists(redis, settings)
    assert len(lists) == 3_500 and sum(map(len, lists.values())) > 20_000
    assert any(source == "neighbours" for name, served in lists.items()
               if name.startswith("personalised, the neighbours") for _, _, source, _ in served)
    if os.environ.get("STREAMREC_RECORD_SERVED_LISTS") == "1":
        RECORDED.write_bytes(gzip.compress(json.dumps(lists).encode(), mtime=0))
    recorded = json.loads(gzip.decompress(RECORDED.read_bytes()))
    assert lists.keys() == recorded.keys()
    for name, served in lists.items():
        expected = recorded[name]
        if name.startswith("shadow lists"):
            assert served == expected, name
            continue
        assert [(i, source, reason) for i, _, source, reason in served] == [
            (i, source, reason) for i, _, source, reason in expected], name
        for (item, score, *_), (_, recorded_score, *_) in zip(served, expected, strict=True):
            assert math.isclose(score, recorded_score, rel_tol=RELATIVE_TOLERANCE), (name, item)
