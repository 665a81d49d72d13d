"""The dashboard's rates, lag, latency quantiles and CTR, from pairs of snapshots, by hand."""

import math

import pytest

from serving.dashboard import LATENCY_BOUNDS, Snapshot, histogram_quantile, series


def latency_counts(**per_bound: int) -> list[int]:
    """Cumulative counts over LATENCY_BOUNDS from observations per bound (e.g. ms5=3)."""
    observed = {float(name[2:]) / 1000 if name != "inf" else math.inf: n
                for name, n in per_bound.items()}
    running, counts = 0, []
    for bound in LATENCY_BOUNDS:
        running += observed.get(bound, 0)
        counts.append(running)
    return counts


def snapshot(at_ms: int, **fields: object) -> Snapshot:
    values: dict[str, object] = {
        "at_ms": at_ms, "events_applied": 0, "dead_lettered": 0, "newest_event_ms": None,
        "lists_served": 0, "list_latency_counts": latency_counts(), "recommenders": {}}
    return Snapshot.model_validate({**values, **fields})


def test_quantile_is_linear_within_its_bucket() -> None:
    bounds, counts = (0.005, 0.010, math.inf), (2, 8, 10)
    # median: rank 5 of 10 lies in (5 ms, 10 ms], 3 of its 6 observations in: 7.5 ms
    assert histogram_quantile(0.5, bounds, counts) == pytest.approx(0.0075)
    # rank 1 of 10 lies in the first bucket, from 0: half of 5 ms
    assert histogram_quantile(0.1, bounds, counts) == pytest.approx(0.0025)
    # rank 9.9 lies in +Inf: the highest finite bound, as Prometheus answers
    assert histogram_quantile(0.99, bounds, counts) == 0.010
    assert histogram_quantile(0.5, bounds, (0, 0, 0)) is None


def test_rates_lag_latency_and_ctr_between_two_snapshots() -> None:
    earlier = snapshot(
        10_000, events_applied=100, dead_lettered=1, newest_event_ms=9_000, lists_served=40,
        list_latency_counts=latency_counts(ms5=30, ms10=10),
        recommenders={"personalised": {"items_shown": 50, "click": 2}})
    later = snapshot(
        12_000, events_applied=160, dead_lettered=4, newest_event_ms=11_500, lists_served=50,
        list_latency_counts=latency_counts(ms5=34, ms10=14, ms25=2),
        recommenders={"personalised": {"items_shown": 100, "click": 8},
                      "trending": {"items_shown": 0, "click": 0}})
    [point] = series([earlier, later])
    assert point.at_ms == 12_000
    assert point.events_per_second == 30.0  # 60 events in 2 s
    assert point.dead_letters_per_second == 1.5
    assert point.lag_seconds == 0.5  # sampled at 12.0 s, newest event stamped 11.5 s
    assert point.lists_per_second == 5.0
    # this interval's 10 answers: 4 under 5 ms, 4 in (7.5, 10], 2 in (15, 25] (the bounds
    # are 5, 7.5, 10, 15, 25 ms)
    assert point.p50_ms == pytest.approx(8.125)  # rank 5: 7.5 + 2.5 * (5 - 4) / 4
    assert point.p99_ms == pytest.approx(24.5)  # rank 9.9: 15 + 10 * (9.9 - 8) / 2
    assert point.ctr == {"personalised": 0.08, "trending": None}  # 8 clicks / 100 shown


def test_a_counter_that_went_down_gives_no_value_for_that_interval() -> None:
    before_restart = snapshot(0, events_applied=10, lists_served=500,
                              list_latency_counts=latency_counts(ms5=500))
    after_restart = snapshot(1_000, events_applied=15, lists_served=3,
                             list_latency_counts=latency_counts(ms5=3))
    [point] = series([before_restart, after_restart])
    assert point.events_per_second == 5.0  # Redis' counters survive a service restart
    assert point.lists_per_second is None
    assert point.p50_ms is None and point.p99_ms is None
    assert point.lag_seconds is None  # nothing applied yet


def test_one_point_per_pair_of_consecutive_snapshots() -> None:
    snapshots = [snapshot(at, events_applied=at // 100) for at in (0, 1_000, 3_000)]
    assert [(p.at_ms, p.events_per_second) for p in series(snapshots)] == [
        (1_000, 10.0), (3_000, 10.0)]
    assert series(snapshots[:1]) == []
