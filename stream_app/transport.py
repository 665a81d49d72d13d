"""The aiokafka transport with a short fetch wait, registered as Faust's `streamrec://` scheme.

Faust builds its consumer with a hard-coded `fetch_max_wait_ms=1500`. A broker that does not
answer a fetch early when data arrives (Tansu 0.6 does not) then holds every event up to
1.5 s: measured p50 424 ms from produce to state, p99 775 ms. 20 ms brings it to p50 31 ms,
p99 59 ms. Faust has no setting for it, so the consumer is adjusted right after Faust creates
it; `tests/integration/test_transport.py` fails if a Faust or aiokafka upgrade undoes this.
"""

from typing import Any

import aiokafka
from faust.transport.drivers import aiokafka as faust_aiokafka

FETCH_MAX_WAIT_MS = 20


class ConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
    def _create_worker_consumer(self, transport: Any) -> aiokafka.AIOKafkaConsumer:
        consumer = super()._create_worker_consumer(transport)
        consumer._fetch_max_wait_ms = FETCH_MAX_WAIT_MS  # read when the fetcher starts
        return consumer


class Consumer(faust_aiokafka.Consumer):
    def _new_consumer_thread(self) -> ConsumerThread:
        return ConsumerThread(self, loop=self.loop, beacon=self.beacon)


class Transport(faust_aiokafka.Transport):
    Consumer = Consumer
