"""The Faust application: agents read batches, validate them and hand them to plain functions.

Delivery: Faust commits a batch's offsets only after `process_batch` returns, so a crash
redelivers records; `StateWriter` makes redelivery harmless (see lua/apply_batch.lua).
"""

import asyncio
import logging
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import faust
from pydantic import BaseModel
from redis import exceptions as redis_errors
from redis.asyncio import Redis

from streamrec.contract import Settings, ensure_topics, parse_event, parse_item

from .state_writer import BatchResult, StateWriter
from .validation import RawRecord, Rejection, validate_records

log = logging.getLogger(__name__)

REDIS_OUTAGE_ERRORS = (
    redis_errors.ConnectionError,
    redis_errors.TimeoutError,
    redis_errors.BusyLoadingError,
)


@dataclass
class WorkerCounters:
    applied: int = 0
    duplicates_skipped: int = 0
    dead_lettered: int = 0

    def add(self, result: BatchResult) -> None:
        self.applied += result.applied
        self.duplicates_skipped += result.duplicates_skipped
        self.dead_lettered += result.dead_lettered


async def apply_until_done(writer: StateWriter, records: Sequence[Any]) -> BatchResult:
    """Retry through Redis outages: the batch is atomic and idempotent, so a retry after an
    unknown outcome (timeout) cannot apply anything twice."""
    delay = 0.1
    while True:
        try:
            return await writer.apply(records)
        except REDIS_OUTAGE_ERRORS as error:
            log.warning("Redis unavailable (%s); retrying the batch in %.1fs", error, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)


def create_app(settings: Settings) -> faust.App:
    app = faust.App(
        settings.consumer_group,
        broker=[f"streamrec://{server.strip()}"
                for server in settings.kafka_bootstrap_servers.split(",")],
        key_serializer="raw",
        value_serializer="raw",
        web_enabled=False,
        topic_allow_declare=False,  # streamrec.topics creates them with our partition counts
        topic_partitions=settings.topic_partitions,
        # Join a group in ~5 s instead of ~31 s and take over a dead worker's partitions in ~10 s.
        broker_session_timeout=6,
        broker_heartbeat_interval=1,
        broker_rebalance_timeout=10,
        datadir=tempfile.mkdtemp(prefix="streamrec-worker-"),
    )
    writer = StateWriter(Redis.from_url(settings.redis_url), settings)
    dead_letters = app.topic(settings.dead_letter_topic)
    counters = WorkerCounters()

    async def send_to_dead_letter(rejections: list[Rejection]) -> None:
        highest = await writer.highest_applied({r.raw.source for r in rejections})
        fresh = [r for r in rejections if r.raw.offset > highest.get(r.raw.source, -1)]
        futures = [
            await dead_letters.send(key=r.raw.key, value=r.dead_letter_value(),
                                    headers=r.dead_letter_headers())
            for r in fresh
        ]
        await asyncio.gather(*futures)
        for rejection in fresh:
            log.info("dead-lettered %s@%d: %s", rejection.raw.source, rejection.raw.offset,
                     rejection.reason[:500])

    async def process_batch(events: Sequence[faust.EventT],
                            parse: Callable[[bytes], BaseModel]) -> None:
        raws = [RawRecord(e.message.topic, e.message.partition, e.message.offset,
                          e.message.key, e.message.value) for e in events]
        records, rejections = validate_records(raws, parse)
        if rejections:
            await send_to_dead_letter(rejections)
        counters.add(await apply_until_done(writer, records))

    @app.agent(app.topic(settings.events_topic))
    async def learn_interactions(stream: faust.StreamT) -> None:
        async for batch in stream.take_events(settings.batch_max_events,
                                              within=settings.batch_within_seconds):
            await process_batch(batch, lambda raw: parse_event(raw, settings))

    @app.agent(app.topic(settings.items_topic))
    async def learn_catalogue(stream: faust.StreamT) -> None:
        async for batch in stream.take_events(settings.batch_max_events,
                                              within=settings.batch_within_seconds):
            await process_batch(batch, lambda raw: parse_item(raw, settings))

    @app.timer(interval=10.0)
    async def report_counters() -> None:
        log.info("applied %d events, dead-lettered %d, skipped %d redelivered",
                 counters.applied, counters.dead_lettered, counters.duplicates_skipped)

    return app


def run_worker(settings: Settings, log_level: str = "info") -> None:
    """Create the topics if missing, then run one worker until SIGTERM/SIGINT."""
    asyncio.run(ensure_topics(settings))
    app = create_app(settings)
    faust.Worker(app, loglevel=log_level.upper()).execute_from_commandline()
