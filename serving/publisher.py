"""Produces events to Kafka for the service: posted events, catalogue entries, impressions.

The service must answer while the broker is down (503 for writes, recommendations as
usual), so the producer connects lazily and every wait on the broker is bounded.
"""

import asyncio
import logging
from collections.abc import Sequence

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from .telemetry import IMPRESSIONS_DROPPED, IMPRESSIONS_PUBLISHED, KAFKA_ERRORS

log = logging.getLogger(__name__)


class BrokerUnavailable(RuntimeError):
    """The broker did not take the records in time; nothing is known to be published."""


class EventPublisher:
    def __init__(self, bootstrap_servers: str, timeout_seconds: float = 5.0) -> None:
        self._bootstrap_servers = bootstrap_servers
        self._timeout = timeout_seconds
        self._producer: AIOKafkaProducer | None = None
        self._connecting = asyncio.Lock()
        self._background: set[asyncio.Task[None]] = set()

    async def _connected(self) -> AIOKafkaProducer:
        async with self._connecting:
            if self._producer is None:
                producer = AIOKafkaProducer(
                    bootstrap_servers=self._bootstrap_servers,
                    linger_ms=2,
                    request_timeout_ms=int(self._timeout * 1000),
                    enable_idempotence=False,
                )
                try:
                    await asyncio.wait_for(producer.start(), self._timeout)
                except (KafkaError, OSError, TimeoutError) as error:
                    await producer.stop()
                    raise BrokerUnavailable(f"Kafka is unreachable: {error!r}") from error
                self._producer = producer
            return self._producer

    async def publish(self, topic: str, records: Sequence[tuple[bytes, bytes]]) -> None:
        """Send (key, value) records and wait until the broker has them all."""
        try:
            producer = await self._connected()
            futures = [await producer.send(topic, value=value, key=key) for key, value in records]
            await asyncio.wait_for(asyncio.gather(*futures), self._timeout)
        except BrokerUnavailable:
            KAFKA_ERRORS.inc()
            raise
        except (KafkaError, TimeoutError) as error:
            KAFKA_ERRORS.inc()
            raise BrokerUnavailable(f"Kafka did not accept the events: {error!r}") from error

    def publish_in_background(self, topic: str, records: Sequence[tuple[bytes, bytes]]) -> None:
        """Fire and forget (impressions): a response never waits on the broker for them."""
        task = asyncio.get_running_loop().create_task(self._publish_logged(topic, records))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _publish_logged(self, topic: str, records: Sequence[tuple[bytes, bytes]]) -> None:
        try:
            await self.publish(topic, records)
        except BrokerUnavailable as error:
            IMPRESSIONS_DROPPED.inc(len(records))
            log.warning("dropped %d impressions: %s", len(records), error)
        else:
            IMPRESSIONS_PUBLISHED.inc(len(records))

    async def ready(self) -> bool:
        try:
            producer = await self._connected()
            await asyncio.wait_for(producer.client.fetch_all_metadata(), self._timeout)
        except (BrokerUnavailable, KafkaError, OSError, TimeoutError):
            return False
        return True

    async def close(self) -> None:
        if self._background:
            await asyncio.wait(self._background, timeout=self._timeout)
        if self._producer is not None:
            await self._producer.stop()
