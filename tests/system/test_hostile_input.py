"""Anything a producer can send: the worker never stops, every bad record lands in
dead-letter with a reason, every valid record beside them is applied, and the HTTP API
answers 4xx, never 5xx."""

import asyncio
import json
from collections import Counter
from collections.abc import Iterator

import httpx
import pytest
import redis
from hypothesis import given, settings
from hypothesis import strategies as st

from streamrec.contract import (
    InvalidRecord,
    RedisKeys,
    Settings,
    ensure_topics,
    parse_event,
    produce_records,
)
from tests.support.hostile import hostile_corpus, valid_event
from tests.support.processes import ChildProcesses, wait_for
from tests.support.servers import Servers

CORPUS = 10_000
VALID_EVERY = 10  # one valid record after every 10 bad ones
DEFAULTS = Settings()

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner,
                                                                 max_size=6),
    max_leaves=20,
)


@given(st.binary(max_size=2000))
@settings(max_examples=500, deadline=None)
def test_any_bytes_are_either_an_event_or_rejected_with_a_reason(raw: bytes) -> None:
    try:
        parse_event(raw, DEFAULTS)
    except InvalidRecord as rejected:
        assert rejected.reason


@given(st.dictionaries(st.sampled_from(["event_id", "user_id", "item_id", "event_type",
                                        "timestamp", "properties", "extra"]), json_values))
@settings(max_examples=500, deadline=None)
def test_any_json_object_is_either_an_event_or_rejected_with_a_reason(record: dict) -> None:
    try:
        event = parse_event(json.dumps(record).encode(), DEFAULTS)
    except InvalidRecord as rejected:
        assert rejected.reason
    else:
        assert event.event_type in DEFAULTS.event_types


@pytest.fixture(scope="module")
def corpus() -> list[tuple[str, bytes]]:
    return hostile_corpus(CORPUS)


def test_corpus_covers_every_kind(corpus: list[tuple[str, bytes]]) -> None:
    kinds = Counter(kind for kind, _ in corpus)
    assert len(corpus) == CORPUS
    assert set(kinds) == {
        "invalid utf-8", "truncated json", "deeply nested json", "wrong type", "missing field",
        "extra field", "unknown event type", "nan timestamp", "negative timestamp",
        "far-future timestamp", "empty id", "control characters", "not an object",
        "10 MB string"}
    for _, raw in corpus:
        with pytest.raises(InvalidRecord):
            parse_event(raw, DEFAULTS)


def interleaved(corpus: list[tuple[str, bytes]]) -> Iterator[tuple[bytes, bytes, bool]]:
    """(key, value, is_valid) with a valid event after every VALID_EVERY bad records."""
    import random

    rng = random.Random(9)
    for number, (_, raw) in enumerate(corpus):
        yield f"bad{number % 13}".encode(), raw, False
        if number % VALID_EVERY == VALID_EVERY - 1:
            event = valid_event(rng, number)
            yield str(event["user_id"]).encode(), json.dumps(event).encode(), True


async def produce(settings: Settings, records: list[tuple[bytes, bytes, bool]]) -> None:
    await produce_records(settings, settings.events_topic,
                          ((key, value) for key, value, _ in records))


def through_the_worker(settings: Settings, records: list[tuple[bytes, bytes, bool]],
                       logs: object) -> tuple[int, int]:
    """Produce `records`, let a worker take them all; (events applied, dead-lettered). The
    worker must still run at the end."""
    asyncio.run(ensure_topics(settings))
    children = ChildProcesses(settings, logs)  # type: ignore[arg-type]
    counters = RedisKeys(settings.key_prefix).counters
    try:
        worker = children.start_worker()
        asyncio.run(produce(settings, records))
        with redis.Redis.from_url(settings.redis_url) as client:
            def count(name: str) -> int:
                return int(client.hget(counters, name) or 0)

            wait_for(lambda: count("events_applied") + count("dead_lettered") == len(records),
                     "every record to be applied or dead-lettered", 120, 0.2)
            assert worker.poll() is None
            return count("events_applied"), count("dead_lettered")
    finally:
        children.stop_all()


@pytest.mark.slow
def test_hostile_corpus_through_kafka(servers: Servers, corpus: list[tuple[str, bytes]],
                                      tmp_path: object) -> None:
    records = list(interleaved(corpus))
    valid = sum(is_valid for _, _, is_valid in records)
    assert through_the_worker(servers.settings(), records, tmp_path) == (valid, CORPUS)


@pytest.mark.slow
def test_hostile_corpus_through_http(servers: Servers, corpus: list[tuple[str, bytes]],
                                     tmp_path: object) -> None:
    children = ChildProcesses(servers.settings(), tmp_path)
    try:
        _, base = children.start_service()
        statuses: Counter[tuple[str, int]] = Counter()
        with httpx.Client(timeout=30) as http:
            for kind, raw in corpus:
                response = http.post(f"{base}/v1/events", content=raw,
                                     headers={"content-type": "application/json"})
                statuses[kind, response.status_code] += 1
        assert sum(statuses.values()) == CORPUS
        assert {status for _, status in statuses} <= {202, 413, 422}, statuses
        # Over HTTP a missing event_id or timestamp is filled in, and a list of events is a
        # batch: those "bad Kafka records" are fine requests. Nothing else is accepted.
        assert {kind for kind, status in statuses if status == 202} <= {
            "missing field", "not an object"}, statuses
    finally:
        children.stop_all()


async def dead_letters(settings: Settings, expected: int) -> list[object]:
    from aiokafka import AIOKafkaConsumer

    consumer = AIOKafkaConsumer(settings.dead_letter_topic,
                                bootstrap_servers=settings.kafka_bootstrap_servers,
                                auto_offset_reset="earliest", fetch_max_bytes=8 * 1024 * 1024)
    await consumer.start()
    try:
        found: list[object] = []
        for _ in range(100):
            for batch in (await consumer.getmany(timeout_ms=200)).values():
                found += batch
            if len(found) >= expected:
                break
        return found
    finally:
        await consumer.stop()


def test_a_record_too_big_to_dead_letter_as_is_costs_no_valid_event(servers: Servers,
                                                                    tmp_path: object) -> None:
    """A 2 MB key on a bad record: its dead-letter copy is cut to fit (sizes and digests in
    headers) and the valid events around it in the same batch are all applied."""
    import hashlib
    import random

    settings = servers.settings()
    rng = random.Random(3)
    huge_key = b"k" * (2 * 1024 * 1024)
    around = [(b"u", json.dumps(valid_event(rng, n)).encode(), True) for n in range(40)]
    records = [*around[:20], (huge_key, b"{not json", False), *around[20:]]
    assert through_the_worker(settings, records, tmp_path) == (40, 1)
    [copy] = asyncio.run(dead_letters(settings, 1))
    headers = dict(copy.headers)  # type: ignore[attr-defined]
    assert len(copy.key) == 1024  # type: ignore[attr-defined]
    assert headers["streamrec.key.size"] == str(len(huge_key)).encode()
    assert headers["streamrec.key.sha256"] == hashlib.sha256(huge_key).hexdigest().encode()
