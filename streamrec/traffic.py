"""Live synthetic traffic for the demo: the catalogue once, then shopper events at a steady
rate, stamped with the wall clock."""

import asyncio
import logging
import time

from aiokafka import AIOKafkaProducer

from streamrec.contract import Settings
from streamrec.synthetic import events, make_world
from streamrec.topics import ensure_topics

log = logging.getLogger(__name__)
TICK_SECONDS = 0.05


async def produce_traffic(settings: Settings, rate: float, users: int, count: int = 0) -> None:
    await ensure_topics(settings)
    world = make_world(users=users)
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap_servers, linger_ms=5)
    await producer.start()
    try:
        for item in world.catalogue():
            await producer.send(settings.items_topic, key=item.item_id.encode(),
                                value=item.model_dump_json().encode())
        await producer.flush()
        stream = events(world, count or 10**12, start_ms=int(time.time() * 1000))
        started = time.monotonic()
        for sent, event in enumerate(stream, start=1):
            live = event.model_copy(update={"timestamp": int(time.time() * 1000)})
            await producer.send(settings.events_topic, key=live.user_id.encode(),
                                value=live.model_dump_json().encode())
            ahead = sent / rate - (time.monotonic() - started)
            if ahead > TICK_SECONDS:
                await asyncio.sleep(ahead)
        await producer.flush()
    finally:
        await producer.stop()
