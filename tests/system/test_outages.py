"""Servers going away: the service answers 503 (never hangs, never 500) and recovers by
itself; the worker waits out a Redis outage without losing or doubling events."""

import asyncio
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
import redis

from streamrec.contract import RedisKeys, Settings, ensure_topics, produce_records
from streamrec.servers import RedisServer, free_port
from tests.support.processes import ChildProcesses, wait_for
from tests.support.servers import Servers

pytestmark = pytest.mark.slow


def test_service_answers_503_while_redis_is_down_and_recovers(servers: Servers, tmp_path: Path
                                                              ) -> None:
    store = RedisServer(tmp_path, persist=True)
    store.start()
    settings = servers.settings().model_copy(update={"redis_url": store.url})
    children = ChildProcesses(settings, tmp_path)
    try:
        _, base = children.start_service()
        url = f"{base}/v1/users/someone/recommendations"
        assert httpx.get(url).status_code == 200
        store.kill()
        started = time.monotonic()
        down = httpx.get(url, timeout=10)
        assert time.monotonic() - started < 2.0
        assert down.status_code == 503
        assert down.headers["Retry-After"] == "1"
        assert down.json()["error"] == "the recommendation store (Redis) is unavailable; retry"
        assert httpx.get(f"{base}/readyz").json()["redis"] is False
        store.start()
        wait_for(lambda: httpx.get(url).status_code == 200, "the service to recover", 10)
    finally:
        children.stop_all()
        store.stop()


def test_posting_events_answers_503_while_the_broker_is_unreachable(servers: Servers,
                                                                   tmp_path: Path) -> None:
    nowhere = f"127.0.0.1:{free_port()}"
    settings = servers.settings().model_copy(update={"kafka_bootstrap_servers": nowhere})
    children = ChildProcesses(settings, tmp_path)
    try:
        _, base = children.start_service()
        started = time.monotonic()
        response = httpx.post(f"{base}/v1/events", json={
            "user_id": "u", "item_id": "i", "event_type": "view"}, timeout=30)
        assert time.monotonic() - started < 10.0
        assert response.status_code == 503
        assert response.json()["error"] == "the event broker (Kafka) is unavailable; retry"
        assert httpx.get(f"{base}/readyz", timeout=30).json() == {
            "status": "unavailable", "redis": True, "kafka": False, "stalled": {},
            "pseudonym_key": True}
        assert httpx.get(f"{base}/v1/trending").status_code == 200  # reads do not need Kafka
    finally:
        children.stop_all()


def test_worker_rides_out_a_redis_outage_without_losing_or_doubling(servers: Servers,
                                                                   tmp_path: Path) -> None:
    store = RedisServer(tmp_path, persist=True)
    store.start()
    settings = isolated_topics(servers, redis_url=store.url)
    children = ChildProcesses(settings, tmp_path)
    total = OUTAGE_EVENTS
    try:
        worker = children.start_worker()
        asyncio.run(_produce(settings, total))
        with redis.Redis.from_url(store.url) as client:
            wait_for(lambda: events_applied(client, settings) > 0, "the first events", 60)
            store.kill()
            time.sleep(2.0)
            store.start()
        with redis.Redis.from_url(store.url) as client:
            wait_for(lambda: once_loaded(events_applied, client, settings) == total,
                     "every event", 60, 0.2)
            time.sleep(1.0)  # nothing more arrives
            assert events_applied(client, settings) == total
            assert worker.poll() is None
    finally:
        children.stop_all()
        store.stop()


OUTAGE_EVENTS = 3000


def events_applied(client: redis.Redis, settings: Settings) -> int:
    return int(client.hget(RedisKeys(settings.key_prefix).counters, "events_applied") or 0)


def once_loaded(read: Callable[[redis.Redis, Settings], int], client: redis.Redis,
                settings: Settings) -> int | None:
    """`read`, or None while a restarted Redis is still loading its append-only file."""
    try:
        return read(client, settings)
    except redis.exceptions.BusyLoadingError:
        return None


def isolated_topics(servers: Servers, **changes: object) -> Settings:
    settings = servers.settings().model_copy(update=changes)
    asyncio.run(ensure_topics(settings))
    return settings


async def _produce(settings: Settings, total: int) -> None:
    """`total` view events, spread over time (the outages happen while they flow)."""
    def bodies() -> Iterator[tuple[bytes, bytes]]:
        for k in range(total):
            user = f"u{k % 50}"
            yield user.encode(), json.dumps({
                "event_id": str(k), "user_id": user, "item_id": f"i{k % 97}",
                "event_type": "view", "timestamp": 1_764_000_000_000 + k}).encode()

    await produce_records(settings, settings.events_topic, bodies(), linger_ms=0,
                          pause_every=100)


def test_sigterm_lets_the_service_finish_requests_in_flight(servers: Servers, tmp_path: Path
                                                            ) -> None:
    import signal

    children = ChildProcesses(isolated_topics(servers, max_inflight_cost=1000,
                                              max_inflight_cost_per_caller=1000), tmp_path)
    service, base = children.start_service()  # admits all 40 (this test is about draining)
    batch = [{"user_id": f"u{k}", "item_id": "i", "event_type": "view"} for k in range(1000)]

    async def post_all() -> list[object]:
        async with httpx.AsyncClient(timeout=30) as client:
            async def post() -> object:
                try:
                    return (await client.post(f"{base}/v1/events", json=batch)).status_code
                except httpx.TransportError:
                    return "not taken"  # connection refused or closed before it was read

            assert await post() == 202  # the producer is connected
            requests = [asyncio.create_task(post()) for _ in range(40)]
            await asyncio.wait(requests, return_when=asyncio.FIRST_COMPLETED)
            service.send_signal(signal.SIGTERM)  # with the others in flight
            return await asyncio.gather(*requests)

    try:
        outcomes = asyncio.run(post_all())
        # uvicorn shuts down gracefully, then re-raises the signal so its exit says why.
        assert service.wait(timeout=30) == -signal.SIGTERM
        assert set(outcomes) <= {202, "not taken"}, outcomes
        # Every request the service started on was finished and answered.
        log = next(tmp_path.glob("service-*.log")).read_text()
        assert log.count('"POST /v1/events HTTP/1.1" 202') == outcomes.count(202) + 1 > 1
        assert "Finished server process" in log
    finally:
        children.stop_all()


def test_broker_outage_the_worker_resumes_and_the_service_answers_503(
        servers: Servers, tmp_path: Path) -> None:
    """The broker stops answering (SIGSTOP: unreachable, data kept) and comes back."""
    import signal

    from streamrec.servers import KafkaBroker

    broker = KafkaBroker(tmp_path)
    broker.start()
    settings = isolated_topics(servers, kafka_bootstrap_servers=broker.bootstrap_servers)
    children = ChildProcesses(settings, tmp_path)
    total = OUTAGE_EVENTS
    try:
        worker = children.start_worker()
        _, base = children.start_service()
        asyncio.run(_produce(settings, total))
        with redis.Redis.from_url(settings.redis_url) as client:
            wait_for(lambda: events_applied(client, settings) > 0, "the first events", 60)
            broker.process.send_signal(signal.SIGSTOP)
            started = time.monotonic()
            response = httpx.post(f"{base}/v1/events", json={
                "user_id": "u", "item_id": "i", "event_type": "view"}, timeout=30)
            assert response.status_code == 503
            assert time.monotonic() - started < 10.0
            time.sleep(max(0.0, 8.0 - (time.monotonic() - started)))
            broker.process.send_signal(signal.SIGCONT)
            wait_for(lambda: events_applied(client, settings) == total,
                     "every event after the outage", 90, 0.2)
            time.sleep(1.0)
            assert events_applied(client, settings) == total
        assert worker.poll() is None
        assert httpx.post(f"{base}/v1/events", json={
            "user_id": "u", "item_id": "i", "event_type": "view"}, timeout=30).status_code == 202
    finally:
        if broker.process is not None and broker.process.poll() is None:
            broker.process.send_signal(signal.SIGCONT)
        children.stop_all()
        broker.stop()
