"""With STREAMREC_TEST_DOCKER=1 and a Docker engine, the `servers` fixture runs the whole suite
on the official Kafka and Redis images through testcontainers; this test says so in the
report either way."""

import asyncio
import os

import pytest
import redis
from aiokafka.admin import AIOKafkaAdminClient

from tests.support.servers import Servers


@pytest.mark.docker
@pytest.mark.skipif(os.environ.get("STREAMREC_TEST_DOCKER") != "1",
                    reason="STREAMREC_TEST_DOCKER=1 runs the suite on the official Kafka and "
                    "Redis images (needs Docker)")
def test_suite_runs_on_container_images(servers: Servers) -> None:
    async def topics() -> list[str]:
        admin = AIOKafkaAdminClient(bootstrap_servers=servers.bootstrap_servers)
        await admin.start()
        try:
            return await admin.list_topics()
        finally:
            await admin.close()

    assert isinstance(asyncio.run(topics()), list)
    with redis.Redis.from_url(servers.redis_url) as client:
        assert client.ping()
