"""Create the topics up front with the partition counts we want, each partition's log
opened by an epoch record.

Brokers that auto-create topics pick their own partition count (Tansu: 4), and the events
topic's partition count bounds how many workers can share the load.

The epoch record (no value, a random log id in the `LOG_ID_HEADER` header) is the first record
of every partition we create. The worker's exactly-once guard keeps the highest applied offset
per partition; a broker that lost its data (the embedded one keeps topics in memory) numbers
offsets from 0 again, and without a new log id the guard would skip the new log as already
applied.
"""

import asyncio
import logging
import uuid
from collections.abc import Iterable

from aiokafka import AIOKafkaProducer
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
            retention = {settings.dead_letter_topic: {
                "retention.ms": str(settings.dead_letter_retention_days * 86_400_000)}}
            missing = [NewTopic(name, partitions, replication_factor=1,
                                topic_configs=retention.get(name, {}))
                       for name, partitions in wanted.items() if name not in existing]
            if missing:
                try:
                    await admin.create_topics(missing)
                except TopicAlreadyExistsError:
                    return  # another process won the race and opens the logs
                await open_logs(settings, {t.name: t.num_partitions for t in missing
                                           if t.name != settings.dead_letter_topic})
                log.info("created topics %s", [t.name for t in missing])
            return
        except KafkaConnectionError:
            if asyncio.get_running_loop().time() > deadline:
                raise
            await asyncio.sleep(0.5)
        finally:
            await admin.close()


LOG_ID_HEADER = "streamrec.log_id"
#: Records up to this size can be produced with `produce_records` (hostile tests send big ones).
MAX_PRODUCED_BYTES = 16 * 1024 * 1024


async def produce_records(settings: Settings, topic: str,
                          records: Iterable[tuple[bytes | None, bytes]], *,
                          linger_ms: int = 10, pause_every: int = 0) -> int:
    """Produce (key, value) records to `topic` in order and wait until all are written; with
    `pause_every`, yield 10 ms after every that many records (a stream spread over time).
    Returns how many were sent."""
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap_servers,
                                linger_ms=linger_ms, max_request_size=MAX_PRODUCED_BYTES,
                                max_batch_size=256 * 1024)
    await producer.start()
    sent = 0
    try:
        for key, value in records:
            await producer.send(topic, key=key, value=value)
            sent += 1
            if pause_every and sent % pause_every == 0:
                await asyncio.sleep(0.01)
        await producer.flush()
    finally:
        await producer.stop()
    return sent


async def open_logs(settings: Settings, partitions: dict[str, int]) -> None:
    """Write an epoch record with a fresh log id first in every partition of the topics."""
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap_servers, acks="all")
    await producer.start()
    try:
        sent = [await producer.send(topic, value=b"", partition=partition,
                                    headers=[(LOG_ID_HEADER, uuid.uuid4().hex.encode())])
                for topic, count in partitions.items() for partition in range(count)]
        await asyncio.gather(*sent)
    finally:
        await producer.stop()
