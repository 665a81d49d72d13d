"""Live synthetic traffic for the demo: the catalogue once, then shopper events at a steady
rate, stamped with the wall clock. With a service URL, shoppers also look at served lists and
click what matches their hidden taste, carrying the list's recommendation id: the feedback
loop, so /v1/metrics shows a CTR per recommender."""

import asyncio
import logging
import random
import time
import uuid

import httpx
from aiokafka import AIOKafkaProducer

from streamrec.contract import InteractionEvent, Settings, ensure_topics
from streamrec.contract.clock import clock_ms
from streamrec.datasets import World, events, make_world

log = logging.getLogger(__name__)
TICK_SECONDS = 0.05


#: Probability that a shopper clicks a recommended item in / outside their favourite category.
CLICK_IF_TO_TASTE, CLICK_OTHERWISE = 0.3, 0.03
#: Share of browsed lists that are trending rather than personalised (the comparison CTR).
TRENDING_SHARE = 0.3
#: A shopper looks at a list this long before clicking.
DWELL_SECONDS = 1.0


async def produce_traffic(settings: Settings, rate: float, users: int, *, count: int = 0,
                          service: str | None = None, browse_rate: float = 5.0,
                          api_key: str | None = None) -> None:
    await ensure_topics(settings)
    world = make_world(users=users)
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap_servers, linger_ms=5)
    await producer.start()
    try:
        for item in world.catalogue():
            await producer.send(settings.items_topic, key=item.item_id.encode(),
                                value=item.model_dump_json().encode())
        await producer.flush()
        browsing = None
        if service is not None:
            browsing = asyncio.create_task(browse(settings, producer, world, service,
                                                  browse_rate, api_key))
        try:
            await _shop(settings, producer, world, rate, count)
        finally:
            if browsing is not None:
                browsing.cancel()
    finally:
        await producer.stop()


async def browse(settings: Settings, producer: AIOKafkaProducer, world: World, service: str,
                 rate: float, api_key: str | None) -> None:
    """Shoppers ask for a list (the service records the impressions) and click items that
    match their taste, sending the list's recommendation id with the click."""
    rng = random.Random(5)
    pending: set[asyncio.Task[None]] = set()

    async def click_later(user: str, item: str, recommendation_id: str) -> None:
        await asyncio.sleep(DWELL_SECONDS)
        click = InteractionEvent(event_id=uuid.uuid4().hex, user_id=user, item_id=item,
                                 event_type="click", timestamp=clock_ms(),
                                 recommendation_id=recommendation_id)
        await producer.send(settings.events_topic, key=user.encode(),
                            value=click.model_dump_json().encode())

    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    async with httpx.AsyncClient(base_url=service, timeout=5.0, headers=headers) as client:
        while True:
            await asyncio.sleep(1 / rate)
            user = rng.choice(world.users)
            path = ("/v1/trending" if rng.random() < TRENDING_SHARE
                    else f"/v1/users/{user}/recommendations")
            try:
                response = await client.get(path, params={"n": 5, "user_id": user})
                response.raise_for_status()
            except httpx.HTTPError as error:
                log.warning("browsing %s failed: %s", path, error)
                continue
            served = response.json()
            for item in served["items"]:
                to_taste = world.category_of(item["item_id"]) == world.favourite_category[user]
                if rng.random() < (CLICK_IF_TO_TASTE if to_taste else CLICK_OTHERWISE):
                    task = asyncio.create_task(click_later(user, item["item_id"],
                                                           served["recommendation_id"]))
                    pending.add(task)
                    task.add_done_callback(pending.discard)


async def _shop(settings: Settings, producer: AIOKafkaProducer, world: World, rate: float,
                count: int) -> None:
    stream = events(world, count or 10**12, start_ms=clock_ms())
    started = time.monotonic()
    for sent, event in enumerate(stream, start=1):
        live = event.model_copy(update={"timestamp": clock_ms()})
        await producer.send(settings.events_topic, key=live.user_id.encode(),
                            value=live.model_dump_json().encode())
        ahead = sent / rate - (time.monotonic() - started)
        if ahead > TICK_SECONDS:
            await asyncio.sleep(ahead)
    await producer.flush()
