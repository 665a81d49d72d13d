"""The Faust application: agents read batches, validate them and hand them to plain functions.

Delivery: the agents ack a batch's events (Faust then commits their offsets) only after
`process_batch` returns, so a crash redelivers records; `StateWriter` makes redelivery
harmless (see lua/apply_batch.lua).

Never skip: a batch returns only when every record in it was applied or dead-lettered.
Whatever fails on the way (Redis down, a dead-letter copy the broker refuses, a bug) is
retried with backoff, never raised: an agent that crashed would be restarted by Faust past
its batch. While a batch cannot get through, the partitions it came from are recorded as
stalled in Redis (the service's /readyz reports them) and the log says why.
"""

import asyncio
import contextlib
import logging
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Sequence
from pathlib import Path
from typing import Any, TypeVar

import faust
from mode.supervisors import CrashingSupervisor
from pydantic import BaseModel
from redis import exceptions as redis_errors
from redis.asyncio import Redis

from streamrec.contract import (
    DAY_MS,
    AttributionSecret,
    RedisKeys,
    Settings,
    check_attribution,
    ensure_topics,
    json_logging_config,
    parse_event,
    parse_item,
)
from streamrec.contract.clock import clock_ms
from streamrec.contract.decay import DECAY_HALF_LIVES_AHEAD, utc_text

from . import telemetry
from .retention import sweep
from .state_writer import LogEpoch, StateWriter, StreamRecord
from .validation import RawRecord, Rejection, validate_records

log = logging.getLogger(__name__)
T = TypeVar("T")

REDIS_OUTAGE_ERRORS = (
    redis_errors.ConnectionError,
    redis_errors.TimeoutError,
    redis_errors.BusyLoadingError,
)
#: How often the worker looks for users past the retention.
RETENTION_SWEEP_SECONDS = 3600.0
#: The worker's temporary folder (Faust's local files) is named so.
WORKER_DIRECTORY_PREFIX = "streamrec-worker-"
#: Longest pause between two attempts at a batch that does not get through.
MAX_RETRY_DELAY_SECONDS = 5.0
#: A worker starting closer than this to its decay horizon says so in its log.
DECAY_HORIZON_WARNING_DAYS = 30


async def until_done(step: Callable[[], Awaitable[T]], what: str, sources: Collection[str],
                     writer: StateWriter) -> T:
    """Run `step` until it succeeds. Safe to repeat: dead-lettering is deduplicated on the
    guard's position, and a batch is atomic and idempotent, so a retry after an unknown
    outcome (a timeout) cannot apply anything twice."""
    delay, stalled = 0.1, False
    while True:
        try:
            result = await step()
            if stalled:  # the next batch applied clears the stall in Redis
                log.warning("%s got through; %s applying again", what, ", ".join(sources))
            return result
        except asyncio.CancelledError:
            raise
        except REDIS_OUTAGE_ERRORS as error:
            log.warning("Redis unavailable (%s); retrying %s in %.1fs", error, what, delay)
        except Exception as error:
            log.error("%s failed (%r); %s stalled, retrying in %.1fs (nothing is skipped)",
                      what, error, ", ".join(sources), delay)
            with contextlib.suppress(*REDIS_OUTAGE_ERRORS):
                await writer.record_stall(sources, f"{what} failed: {error!r}")
                stalled = True
        await asyncio.sleep(delay)
        delay = min(delay * 2, MAX_RETRY_DELAY_SECONDS)


async def one_after_another(batches: AsyncIterator[T],
                            process: Callable[[T], Awaitable[None]]) -> None:
    """Process each batch once the one before it is done, while `batches` gathers the next:
    Faust's own per-event work then overlaps Redis's instead of waiting for it. What a batch
    raises (only a bug can: `until_done` retries every failure) is raised here at once, even
    while no further batch comes, so the agent's supervisor stops the worker; stopping
    cancels the batch in flight and waits for it (unacked, it is redelivered, and the guard
    skips whatever of it was applied)."""
    here, failed = asyncio.current_task(), []

    def raise_here(task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None and here is not None:
            failed.append(task.exception())
            here.cancel()

    processing: asyncio.Task[None] | None = None
    try:
        async for batch in batches:
            if processing is not None:
                await processing
            processing = asyncio.create_task(process(batch))
            processing.add_done_callback(raise_here)
        if processing is not None:
            await processing
    except asyncio.CancelledError:
        if failed:
            raise failed[0] from None
        raise
    finally:
        if processing is not None and not processing.done():
            processing.cancel()
            await asyncio.wait([processing])


def header_pairs(headers: Any) -> tuple[tuple[str, bytes], ...]:
    """Faust hands headers over as a mapping or as a list of pairs."""
    if not headers:
        return ()
    return tuple(headers.items() if hasattr(headers, "items") else headers)


def create_app(settings: Settings, datadir: Path) -> faust.App:
    """The worker's Faust app; Faust keeps its local files in `datadir`."""
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
        datadir=str(datadir),
    )
    redis = Redis.from_url(settings.redis_url)
    writer = StateWriter(redis, settings)
    attribution = AttributionSecret(redis, RedisKeys(settings.key_prefix))
    dead_letters = app.topic(settings.dead_letter_topic)
    for event_type in settings.event_types:  # every type's series exists from the start
        telemetry.EVENTS_APPLIED.labels(event_type)

    async def send_to_dead_letter(rejections: list[Rejection]) -> None:
        highest = await writer.highest_applied({r.raw.source for r in rejections})
        fresh = [r for r in rejections if r.raw.offset > highest.get(r.raw.source, -1)]
        futures = [
            await dead_letters.send(key=r.dead_letter_key(), value=r.dead_letter_value(),
                                    headers=r.dead_letter_headers())
            for r in fresh
        ]
        await asyncio.gather(*futures)
        if fresh:
            now_ms = clock_ms()
            await writer.remember_dead_letters([r.summary(now_ms) for r in fresh])
        for rejection in fresh:
            telemetry.DEAD_LETTERED.labels(rejection.kind).inc()
            log.info("dead-lettered %s@%d: %s", rejection.raw.source, rejection.raw.offset,
                     rejection.reason[:500])

    async def process_batch(events: Sequence[faust.EventT],
                            parse: Callable[[bytes], BaseModel]) -> None:
        raws = [RawRecord(e.message.topic, e.message.partition, e.message.offset,
                          e.message.key, e.message.value, header_pairs(e.message.headers))
                for e in events]
        sources = sorted({raw.source for raw in raws})
        secret = await until_done(attribution.get, "reading the attribution secret", sources,
                                  writer)
        records, rejections = validate_records(
            raws, lambda raw: check_attribution(parse(raw), secret))
        if rejections:
            await until_done(lambda: send_to_dead_letter(rejections), "dead-lettering",
                             sources, writer)
        await until_done(lambda: apply(records, [e.message.timestamp for e in events]),
                         "applying the batch", sources, writer)

    async def apply(records: list[StreamRecord], produced_at: list[float]) -> None:
        """Apply, and measure: the batch, and for each first delivery of a valid record the
        time from its Kafka timestamp (`produced_at`, seconds) until now."""
        guard = await writer.highest_applied({record.source for record in records})
        started = time.perf_counter()
        result = await writer.apply(records)
        telemetry.record_batch(result, records=len(records),
                               seconds=time.perf_counter() - started)
        now = time.time()
        for record, produced in zip(records, produced_at, strict=True):
            if (record.offset > guard.get(record.source, -1)
                    and not isinstance(record.payload, LogEpoch | None)):
                telemetry.PRODUCE_TO_APPLIED.observe(now - produced)

    async def learn(stream: faust.StreamT, parse: Callable[[bytes], BaseModel]) -> None:
        """Batches applied in order while Faust gathers the next; a batch's events are acked
        (their offsets become committable) only once it is applied."""
        async def process_and_ack(batch: Sequence[faust.EventT]) -> None:
            await process_batch(batch, parse)
            for event in batch:
                await stream.ack(event)

        await one_after_another(stream.noack_take(settings.batch_max_events,
                                                  within=settings.batch_within_seconds),
                                process_and_ack)

    # An agent that raised would be restarted by Faust and read on past the batch it failed;
    # the worker stops instead, so nothing is applied after it (only a bug can raise here:
    # `until_done` retries every failure of a batch).
    @app.agent(app.topic(settings.events_topic), supervisor_strategy=CrashingSupervisor)
    async def learn_interactions(stream: faust.StreamT) -> None:
        await learn(stream, lambda raw: parse_event(raw, settings))

    @app.agent(app.topic(settings.items_topic), supervisor_strategy=CrashingSupervisor)
    async def learn_catalogue(stream: faust.StreamT) -> None:
        await learn(stream, lambda raw: parse_item(raw, settings))

    if settings.user_retention_days is not None:
        @app.timer(interval=RETENTION_SWEEP_SECONDS)
        async def erase_inactive_users() -> None:
            requested = await sweep(settings)
            if requested:
                log.info("retention: requested the erasure of %d inactive users",
                         len(requested))

    @app.timer(interval=10.0)
    async def report_counters() -> None:
        log.info("applied %d events, dead-lettered %d, skipped %d redelivered",
                 telemetry.total(telemetry.EVENTS_APPLIED),
                 telemetry.total(telemetry.DEAD_LETTERED),
                 telemetry.total(telemetry.REDELIVERED_SKIPPED))

    if settings.worker_metrics_port:
        @app.task
        async def metrics_endpoint() -> None:
            runner = await telemetry.serve_metrics(settings, redis, writer)
            try:
                await asyncio.Event().wait()
            finally:
                await runner.cleanup()

    return app


def decay_horizon_notice(settings: Settings, now_ms: int | None = None
                         ) -> tuple[int, str] | None:
    """What a worker starting past its decay horizon (an error: it learns no interaction, but
    still applies erasures) or within DECAY_HORIZON_WARNING_DAYS of it (a warning) logs."""
    horizon, half_lives = settings.decay_horizon
    now_ms = clock_ms(now_ms)
    if horizon - now_ms >= DECAY_HORIZON_WARNING_DAYS * DAY_MS:
        return None
    level, when = ((logging.ERROR, "since") if horizon < now_ms
                   else (logging.WARNING, "after"))
    return level, (
        f"interactions stamped {when} {utc_text(horizon)} cannot be learned "
        f"({DECAY_HALF_LIVES_AHEAD} half-lives of {half_lives} after decay_anchor_ms "
        f"{utc_text(settings.decay_anchor_ms)}) and are dead-lettered: set "
        "STREAMREC_DECAY_ANCHOR_MS to about now (a new state)")


def run_worker(settings: Settings, log_level: str = "info") -> None:
    """Create the topics if missing, then run one worker until SIGTERM/SIGINT; its temporary
    folder is removed when it stops (Faust ends by raising SystemExit)."""
    asyncio.run(ensure_topics(settings))
    if notice := decay_horizon_notice(settings):
        log.log(*notice)
    with tempfile.TemporaryDirectory(prefix=WORKER_DIRECTORY_PREFIX) as datadir:
        app = create_app(settings, Path(datadir))
        json_lines = settings.log_format == "json"
        faust.Worker(app, loglevel=log_level.upper(), quiet=json_lines,
                     logging_config=json_logging_config(log_level) if json_lines else None,
                     ).execute_from_commandline()
