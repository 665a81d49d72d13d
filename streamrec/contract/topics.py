"""Create the topics up front with the partition counts we want.

Brokers that auto-create topics pick their own partition count (Tansu: 4), and the events
topic's partition count bounds how many workers can share the load.
"""

import asyncio
import contextlib
import logging

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaConnectionError, TopicAlreadyExistsError

from .settings import Settings

log = logging.getLogger(__name__)


async def ensure_topics(settings: Settings, timeout: float = 30.0) -> None:
    """Create the events, items and dead-letter topics unless they exist; retry until the
    broker answers or `timeout` passes."""
    wanted = {
        settings.events_topic: settings.topic_partitions,
        settings.items_topic: settings.topic_partitions,
        settings.dead_letter_topic: 1,
    }
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap_servers)
        try:
            await admin.start()
            existing = set(await admin.list_topics())
            missing = [NewTopic(name, partitions, replication_factor=1)
                       for name, partitions in wanted.items() if name not in existing]
            if missing:
                with contextlib.suppress(TopicAlreadyExistsError):  # another process won the race
                    await admin.create_topics(missing)
                log.info("created topics %s", [t.name for t in missing])
            return
        except KafkaConnectionError:
            if asyncio.get_running_loop().time() > deadline:
                raise
            await asyncio.sleep(0.5)
        finally:
            await admin.close()
