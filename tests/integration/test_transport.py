"""The worker's Kafka consumer fetches with a 20 ms wait, not Faust's hard-coded 1.5 s (the
embedded broker holds a fetch for the whole wait even when data arrives)."""

from pathlib import Path

from stream_app.transport import FETCH_MAX_WAIT_MS
from stream_app.worker import create_app
from tests.support.servers import Servers


async def test_the_started_consumer_fetches_with_the_short_wait(servers: Servers,
                                                               tmp_path: Path) -> None:
    app = create_app(servers.settings(), tmp_path)
    consumer = app.consumer._thread._create_worker_consumer(app.transport)
    await consumer.start()
    try:
        assert FETCH_MAX_WAIT_MS == 20
        assert consumer._fetcher._fetch_max_wait_ms == FETCH_MAX_WAIT_MS
    finally:
        await consumer.stop()
