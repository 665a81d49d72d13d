"""The time series the /dashboard page charts, kept in Redis: they survive a service restart,
and every service process answers with the same ones.

Every STREAMREC_DASHBOARD_SAMPLE_SECONDS one service process (the one that takes the
`dashboard_sampler` key, which expires just before the next round) adds a `Snapshot` of
cumulative counters to the capped list `dashboard_samples`: the worker's (events applied,
dead-lettered, the event time of the newest applied event) and the recommenders' items shown
and clicks, from Redis; lists served and the latency histogram of the requests that served
them, from the Prometheus metrics of this machine's service processes (added up over
STREAMREC_HTTP_PROCESSES; several machines' services each count only their own).

Rates and quantiles are differences of consecutive snapshots, worked out when read
(`series`): a counter that went down (a service restart resets its Prometheus counters) gives
no value for that interval rather than a wrong one.
"""

import asyncio
import logging
import math
import os
from collections.abc import Iterable, Sequence
from itertools import pairwise

import orjson
from prometheus_client import CollectorRegistry
from pydantic import BaseModel, Field
from redis import exceptions as redis_errors

from streamrec.contract import Settings
from streamrec.contract.clock import clock_ms

from .state_reader import StateReader
from .telemetry import LATENCY_BUCKETS, service_metrics

log = logging.getLogger(__name__)

#: The latency histogram's upper bounds, the last one +Inf (Prometheus' `le`).
LATENCY_BOUNDS = (*LATENCY_BUCKETS, math.inf)
#: The sampler's key is held this share of an interval, so the next round finds it free.
SAMPLER_HOLD = 0.9


class Snapshot(BaseModel):
    """Cumulative counters at one moment (stored as JSON, newest first)."""

    at_ms: int
    events_applied: int
    dead_lettered: int
    newest_event_ms: int | None = Field(description="Event time of the newest applied event.")
    lists_served: int
    list_latency_counts: list[int] = Field(
        description="Requests that answered with a list, at or under each of LATENCY_BOUNDS "
        "(cumulative, like Prometheus' buckets).")
    recommenders: dict[str, dict[str, int]] = Field(
        description="Per recommender: items_shown and click.")


class Point(BaseModel):
    """What happened between two consecutive snapshots (None: not known for that interval)."""

    at_ms: int
    events_per_second: float | None
    dead_letters_per_second: float | None
    lag_seconds: float | None = Field(description="Now minus the newest applied event's time.")
    lists_per_second: float | None
    p50_ms: float | None
    p99_ms: float | None
    ctr: dict[str, float | None] = Field(description="Per recommender: clicks per item shown "
                                         "so far, as /v1/metrics reports it.")


def histogram_quantile(q: float, bounds: Sequence[float], counts: Sequence[float]
                       ) -> float | None:
    """Prometheus' histogram_quantile: the q-quantile of observations counted cumulatively
    under ascending `bounds` (the last +Inf), linear within its bucket; in the +Inf bucket,
    the highest finite bound. None without observations."""
    total = counts[-1]
    if total <= 0:
        return None
    rank = q * total
    for index, (bound, count) in enumerate(zip(bounds, counts, strict=True)):
        if count >= rank:
            if math.isinf(bound):
                return bounds[-2]
            lower, below = (bounds[index - 1], counts[index - 1]) if index else (0.0, 0.0)
            return lower + (bound - lower) * (rank - below) / (count - below)
    return None


def point(earlier: Snapshot, later: Snapshot) -> Point:
    seconds = (later.at_ms - earlier.at_ms) / 1000

    def rate(now: int, before: int) -> float | None:
        return None if now < before or seconds <= 0 else (now - before) / seconds

    latency: list[int] | None = None
    if (later.lists_served >= earlier.lists_served
            and len(later.list_latency_counts) == len(earlier.list_latency_counts)
            == len(LATENCY_BOUNDS)):
        latency = [now - before for now, before in zip(later.list_latency_counts,
                                                       earlier.list_latency_counts, strict=True)]
        latency = latency if min(latency) >= 0 else None

    def latency_ms(q: float) -> float | None:
        quantile = None if latency is None else histogram_quantile(q, LATENCY_BOUNDS, latency)
        return None if quantile is None else quantile * 1000

    return Point(
        at_ms=later.at_ms,
        events_per_second=rate(later.events_applied, earlier.events_applied),
        dead_letters_per_second=rate(later.dead_lettered, earlier.dead_lettered),
        lag_seconds=None if later.newest_event_ms is None
        else (later.at_ms - later.newest_event_ms) / 1000,
        lists_per_second=rate(later.lists_served, earlier.lists_served),
        p50_ms=latency_ms(0.5), p99_ms=latency_ms(0.99),
        ctr={name: counts.get("click", 0) / counts["items_shown"]
             if counts.get("items_shown") else None
             for name, counts in later.recommenders.items()},
    )


def series(snapshots: Sequence[Snapshot]) -> list[Point]:
    """One point per pair of consecutive snapshots (oldest first)."""
    return [point(earlier, later) for earlier, later in pairwise(snapshots)]


def served_list_counts(registry: CollectorRegistry, list_routes: Iterable[str]
                       ) -> tuple[int, list[int]]:
    """Lists served, and the cumulative counts per LATENCY_BOUNDS of the 2xx answers of
    `list_routes` (the routes that answer with a list)."""
    routes = frozenset(list_routes)
    served = 0.0
    by_bound = dict.fromkeys(LATENCY_BOUNDS, 0.0)
    for family in registry.collect():
        for sample in family.samples:
            if sample.name == "streamrec_lists_served_total":
                served += sample.value
            elif (sample.name == "streamrec_http_request_duration_seconds_bucket"
                  and sample.labels["route"] in routes
                  and sample.labels["status"].startswith("2")):
                by_bound[float(sample.labels["le"])] += sample.value
    return int(served), [int(by_bound[bound]) for bound in LATENCY_BOUNDS]


class DashboardSeries:
    """Takes the snapshots (one process per round) and reads them back."""

    def __init__(self, reader: StateReader, settings: Settings, list_routes: Iterable[str]
                 ) -> None:
        self.reader = reader
        self.sample_seconds = settings.dashboard_sample_seconds
        self.kept = settings.dashboard_samples_kept
        self.list_routes = frozenset(list_routes)

    async def snapshot(self) -> Snapshot:
        counters = await self.reader.counters()
        watermark = await self.reader.global_watermark()
        recommenders = await self.reader.recommender_metrics()
        served, latency = served_list_counts(service_metrics(), self.list_routes)
        return Snapshot(
            at_ms=clock_ms(), events_applied=counters.get("events_applied", 0),
            dead_lettered=counters.get("dead_lettered", 0),
            newest_event_ms=watermark.event_time_ms, lists_served=served,
            list_latency_counts=latency,
            recommenders={name: {"items_shown": events.get("items_shown", 0),
                                 "click": events.get("click", 0)}
                          for name, events in recommenders.items()})

    async def sample_if_due(self) -> bool:
        """Add a snapshot unless another process took this round's."""
        redis, keys = self.reader.redis, self.reader.keys
        hold_ms = int(self.sample_seconds * SAMPLER_HOLD * 1000)
        if not await redis.set(keys.dashboard_sampler, os.getpid(), nx=True, px=hold_ms):
            return False
        taken = await self.snapshot()
        async with redis.pipeline(transaction=True) as pipe:
            pipe.lpush(keys.dashboard_samples, taken.model_dump_json())
            pipe.ltrim(keys.dashboard_samples, 0, self.kept - 1)
            await pipe.execute()
        return True

    async def sample_forever(self) -> None:
        while True:
            try:
                await self.sample_if_due()
            except redis_errors.RedisError as error:  # the page shows a gap; the service goes on
                log.warning("dashboard: no sample this round: %r", error)
            await asyncio.sleep(self.sample_seconds)

    async def snapshots(self) -> list[Snapshot]:
        """The kept snapshots, oldest first."""
        stored = await self.reader.redis.lrange(self.reader.keys.dashboard_samples, 0,
                                                self.kept - 1)
        return [Snapshot.model_validate(orjson.loads(entry)) for entry in reversed(stored)]
