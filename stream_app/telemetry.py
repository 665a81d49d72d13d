"""What an operator sees of a worker: Prometheus metrics on its own port
(STREAMREC_WORKER_METRICS_PORT).

Counters and histograms are updated as batches are applied. The lag is measured when
Prometheus scrapes: per partition, the records after the last one the exactly-once guard in
Redis has applied (the guard is the truth, whatever the consumer group has committed); in
time, now minus the event time of the newest applied event. Every worker reports the lag of
every partition, so any one of them tells the whole story (aggregate with max, not sum).
"""

import logging
import time

from aiohttp import web
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.metrics import MetricWrapperBase
from redis.asyncio import Redis

from streamrec.contract import RedisKeys, Settings, partition_ends, records_behind

from .state_writer import BatchResult, StateWriter

log = logging.getLogger(__name__)

BATCH_SIZE_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000)
APPLY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.010, 0.020, 0.050, 0.1, 0.25, 0.5, 1.0, 2.5)
DELAY_BUCKETS = (0.005, 0.010, 0.020, 0.030, 0.050, 0.075, 0.1, 0.15, 0.25, 0.5, 1.0, 2.5,
                 5.0, 10.0, 30.0, 60.0)

EVENTS_APPLIED = Counter("streamrec_worker_events_applied_total",
                         "Events learned into Redis, by event type (impressions included).",
                         ["event_type"])
DEAD_LETTERED = Counter("streamrec_worker_dead_lettered_total",
                        "Records sent to the dead-letter topic, by what was wrong (pydantic's "
                        "error type of the first problem, or too_large, no_value, "
                        "validator_error).", ["reason"])
REDELIVERED_SKIPPED = Counter("streamrec_worker_redelivered_skipped_total",
                              "Redelivered records the exactly-once guard skipped.")
DUPLICATE_EVENTS = Counter("streamrec_worker_duplicate_events_total",
                           "Events whose event_id was already applied for the user.")
BATCH_RECORDS = Histogram("streamrec_worker_batch_records", "Records in one applied batch.",
                          buckets=BATCH_SIZE_BUCKETS)
APPLY_DURATION = Histogram("streamrec_worker_batch_apply_duration_seconds",
                           "Time to apply one batch to Redis (its script calls).",
                           buckets=APPLY_BUCKETS)
PRODUCE_TO_APPLIED = Histogram(
    "streamrec_worker_produce_to_applied_seconds",
    "From a record's Kafka timestamp to the end of the batch that applied it (first "
    "deliveries of valid records).", buckets=DELAY_BUCKETS)
LAG_RECORDS = Gauge("streamrec_worker_lag_records",
                    "Records in the partition after the last one the guard has applied.",
                    ["topic", "partition"])
LAG_SECONDS = Gauge("streamrec_worker_lag_seconds",
                    "Now minus the event time of the newest applied event (grows on an idle "
                    "stream: read it with the lag in records).")
REDIS_MEMORY = Gauge("streamrec_redis_used_memory_bytes", "Redis used_memory.")
DECAY_HORIZON = Gauge("streamrec_worker_decay_horizon_timestamp_seconds",
                      "The last event time the settings can learn (the decay horizon).")


def record_batch(result: BatchResult, *, records: int, seconds: float) -> None:
    BATCH_RECORDS.observe(records)
    APPLY_DURATION.observe(seconds)
    for event_type, count in result.applied_by_type.items():
        EVENTS_APPLIED.labels(event_type).inc(count)
    REDELIVERED_SKIPPED.inc(result.duplicates_skipped)
    DUPLICATE_EVENTS.inc(result.duplicate_events)


def total(metric: MetricWrapperBase) -> float:
    """A counter's value summed over its labels (for the worker's log line)."""
    return sum(sample.value for family in metric.collect() for sample in family.samples
               if sample.name.endswith("_total"))


async def measure_lag(settings: Settings, redis: Redis, writer: StateWriter) -> None:
    """Set the gauges that are read from Kafka and Redis; a source that does not answer
    leaves its gauges as they were (and says so in the log)."""
    try:
        ends = await partition_ends(settings, [settings.events_topic, settings.items_topic])
        behind = records_behind(ends, await writer.highest_applied(ends))
        for source, count in behind.items():
            topic, _, partition = source.rpartition(":")
            LAG_RECORDS.labels(topic, partition).set(count)
        newest = await redis.hget(RedisKeys(settings.key_prefix).watermark, "event_time_ms")
        LAG_SECONDS.set(time.time() - int(newest) / 1000 if newest else float("nan"))
        REDIS_MEMORY.set(int((await redis.info("memory"))["used_memory"]))
    except Exception as error:  # a scrape still answers with what is known
        log.warning("metrics: could not measure the lag: %r", error)


async def serve_metrics(settings: Settings, redis: Redis, writer: StateWriter
                        ) -> web.AppRunner:
    """Start `GET /metrics` on the worker's metrics port; clean up the returned runner."""
    async def scrape(_: web.Request) -> web.Response:
        await measure_lag(settings, redis, writer)
        return web.Response(body=generate_latest(REGISTRY),
                            headers={"Content-Type": CONTENT_TYPE_LATEST})

    DECAY_HORIZON.set(settings.decay_horizon[0] / 1000)
    app = web.Application()
    app.router.add_get("/metrics", scrape)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, settings.worker_metrics_host, settings.worker_metrics_port).start()
    log.info("metrics on http://%s:%d/metrics", settings.worker_metrics_host,
             settings.worker_metrics_port)
    return runner
