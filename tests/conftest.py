"""Fixtures. Real servers for the whole session, started on first use (unit tests never
ask for them): the embedded Tansu broker and Valkey by default, the official Kafka and
Redis images through testcontainers with STREAMREC_TEST_DOCKER=1."""

import asyncio
import os
from collections.abc import AsyncIterator, Callable, Iterator

import pytest
from redis.asyncio import Redis

from streamrec.contract import Scope, Settings, create_key, ensure_topics
from tests.support.processes import ChildProcesses
from tests.support.servers import Secured, Servers

USE_DOCKER = os.environ.get("STREAMREC_TEST_DOCKER") == "1"


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
        from streamrec.servers import embedded_servers

        with embedded_servers(workdir) as running:
            yield Servers(running.broker.bootstrap_servers, running.redis.url, workdir)


@pytest.fixture
def settings(servers: Servers) -> Settings:
    return servers.settings()


@pytest.fixture
async def redis(servers: Servers) -> AsyncIterator[Redis]:
    client = Redis.from_url(servers.redis_url)
    yield client
    await client.aclose()


@pytest.fixture(scope="module")
def secured_service(servers: Servers, tmp_path_factory: pytest.TempPathFactory
                    ) -> Iterator[Callable[..., Secured]]:
    """A factory: `secured_service({name: scopes}, **settings)` starts a worker and a service
    that require API keys, creating one key per name; all stop when the module ends."""
    started: list[ChildProcesses] = []

    def start(scopes: dict[str, list[Scope]], **overrides: object) -> Secured:
        logs = tmp_path_factory.mktemp("secured")
        keys_file = logs / "keys.json"
        keys = {name: create_key(keys_file, name, granted) for name, granted in scopes.items()}
        settings = servers.settings(auth="required", api_keys_file=keys_file, **overrides)
        asyncio.run(ensure_topics(settings))
        children = ChildProcesses(settings, logs)
        started.append(children)
        children.start_worker()
        _, base = children.start_service()
        return Secured(settings, base, keys, logs)

    try:
        yield start
    finally:
        for children in started:
            children.stop_all()
