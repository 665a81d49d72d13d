"""Synthetic shoppers with hidden tastes and planted bundles: the production write and read
code must recover both, far above what chance would give."""

import asyncio
import statistics
from dataclasses import dataclass

import pytest
from redis.asyncio import Redis

from serving.recommender import Recommender
from serving.state_reader import StateReader
from stream_app.state_writer import StateWriter, StreamRecord
from streamrec.contract import RedisKeys, Settings
from streamrec.datasets import World, events, make_world
from tests.support.servers import Servers

EVENTS = 20_000
BATCH = 200


@dataclass(frozen=True)
class Recovered:
    users_served: float  # share of users whose list co-occurrence shaped
    category_precision: float  # mean share of a user's top 10 in their hidden category
    bundle_hit_rate: float  # share of items whose most similar item is their planted partner


async def learn_and_measure(settings: Settings, world: World) -> Recovered:
    redis = Redis.from_url(settings.redis_url)
    try:
        writer = StateWriter(redis, settings)
        await writer.apply([StreamRecord("items:0", k, item)
                            for k, item in enumerate(world.catalogue())])
        stream = [StreamRecord("events:0", k, event) for k, event in
                  enumerate(events(world, EVENTS, start_ms=settings.decay_anchor_ms))]
        for start in range(0, len(stream), BATCH):
            await writer.apply(stream[start:start + BATCH])

        recommender = Recommender(StateReader(redis, RedisKeys(settings.key_prefix)), settings)
        precisions = []
        for user in world.users:
            served = await recommender.for_user(user, 10)
            if any(item.source == "co-occurrence" for item in served.items):
                favourite = world.favourite_category[user]
                precisions.append(statistics.mean(
                    world.category_of(i.item_id) == favourite for i in served.items))
        hits = []
        for item, partner in world.bundle_partner.items():
            similar = (await recommender.similar_items(item, 1)).items
            hits.append(bool(similar) and similar[0].item_id == partner)
        return Recovered(len(precisions) / len(world.users), statistics.mean(precisions),
                         statistics.mean(hits))
    finally:
        await redis.aclose()


@pytest.fixture(scope="module")
def recovered(servers: Servers) -> Recovered:
    world = make_world(users=300, categories=8, items_per_category=40)
    return asyncio.run(learn_and_measure(servers.settings(), world))


def test_users_get_their_hidden_category(recovered: Recovered) -> None:
    assert recovered.users_served > 0.9
    assert recovered.category_precision > 0.8  # chance: 1/8; measured 0.95


def test_planted_bundles_are_each_others_nearest(recovered: Recovered) -> None:
    assert recovered.bundle_hit_rate > 0.8  # chance: 1/39 within the category; measured 0.94
