"""Real servers for the whole session: the embedded Tansu broker and Valkey by default, the
official Kafka and Redis images through testcontainers with STREAMREC_TEST_DOCKER=1."""

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from redis.asyncio import Redis

from streamrec.contract import Settings
from streamrec.embedded import embedded_servers

USE_DOCKER = os.environ.get("STREAMREC_TEST_DOCKER") == "1"


@dataclass(frozen=True)
class Servers:
    bootstrap_servers: str
    redis_url: str
    workdir: Path


@pytest.fixture(scope="session")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Servers]:
    workdir = tmp_path_factory.mktemp("servers")
    if USE_DOCKER:
        from testcontainers.community.kafka import KafkaContainer
        from testcontainers.community.redis import RedisContainer

        # testcontainers' Kafka module drives Confluent's build of Apache Kafka (KRaft mode).
        with KafkaContainer("confluentinc/cp-kafka:7.6.0").with_kraft() as kafka, \
                RedisContainer("redis:7.4") as redis:
            host, port = redis.get_container_host_ip(), redis.get_exposed_port(6379)
            yield Servers(kafka.get_bootstrap_server(), f"redis://{host}:{port}/0", workdir)
    else:
        with embedded_servers(workdir) as running:
            yield Servers(running.broker.bootstrap_servers, running.redis.url, workdir)


def isolated_settings(servers: Servers, **overrides: object) -> Settings:
    """Settings whose keys, topics and consumer group no other test uses."""
    tag = uuid.uuid4().hex[:10]
    values: dict[str, object] = {
        "kafka_bootstrap_servers": servers.bootstrap_servers, "redis_url": servers.redis_url,
        "key_prefix": f"t{tag}", "events_topic": f"events-{tag}", "items_topic": f"items-{tag}",
        "dead_letter_topic": f"dead-letter-{tag}", "consumer_group": f"workers-{tag}",
        "topic_partitions": 4,
    }
    return Settings(**{**values, **overrides})


@pytest.fixture
def settings(servers: Servers) -> Settings:
    return isolated_settings(servers)


@pytest.fixture
async def redis(servers: Servers) -> AsyncIterator[Redis]:
    client = Redis.from_url(servers.redis_url)
    yield client
    await client.aclose()
