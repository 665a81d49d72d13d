"""How the worker's agents are set up (what needs no broker to check)."""

import asyncio
import logging
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from mode.supervisors import CrashingSupervisor

from stream_app.worker import create_app, decay_horizon_notice, one_after_another
from streamrec.contract import DAY_MS, Settings


def test_an_agent_that_raises_stops_the_worker_instead_of_restarting_past_its_records(
        tmp_path: Path) -> None:
    app = create_app(Settings(), tmp_path)
    assert len(app.agents) == 2
    assert {agent.supervisor_strategy for agent in app.agents.values()} == {CrashingSupervisor}


async def test_batches_are_processed_one_after_another_while_the_next_is_gathered() -> None:
    log: list[str] = []

    async def batches() -> AsyncIterator[int]:
        for number in range(1, 4):
            log.append(f"gathered {number}")
            yield number

    async def process(number: int) -> None:
        log.append(f"start {number}")
        await asyncio.sleep(0.01)
        log.append(f"done {number}")

    await one_after_another(batches(), process)
    assert [line for line in log if not line.startswith("gathered")] == [
        "start 1", "done 1", "start 2", "done 2", "start 3", "done 3"]
    assert log.index("gathered 2") < log.index("done 1")  # gathering went on meanwhile


async def test_what_a_batch_raises_is_raised_at_once_though_no_further_batch_comes() -> None:
    async def one_then_silence() -> AsyncIterator[int]:
        yield 1
        await asyncio.Event().wait()  # a quiet topic

    async def broken(_: int) -> None:
        raise ValueError("a bug")

    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(ValueError, match="a bug"):
        await asyncio.wait_for(one_after_another(one_then_silence(), broken), 5)
    assert loop.time() - started < 1  # not when wait_for gave up


async def test_stopping_cancels_the_batch_in_flight_and_waits_for_it() -> None:
    started, ended = asyncio.Event(), []

    async def forever() -> AsyncIterator[int]:
        yield 1
        await asyncio.Event().wait()

    async def slow(_: int) -> None:
        started.set()
        try:
            await asyncio.sleep(60)
        finally:
            await asyncio.sleep(0.05)  # cleaning up takes a moment, as a connection's does
            ended.append("cancelled")

    runner = asyncio.create_task(one_after_another(forever(), slow))
    await started.wait()
    runner.cancel()
    with pytest.raises(asyncio.CancelledError):
        await runner
    assert ended == ["cancelled"]


def test_a_worker_starting_near_or_past_its_decay_horizon_says_so() -> None:
    """Within 30 days of it a warning; past it an error (the worker still starts: erasures
    must go through)."""
    settings = Settings()  # the horizon: 2040-06-05, 200 half-lives of 30 days after 2024
    horizon = settings.decay_horizon[0]
    assert decay_horizon_notice(settings, now_ms=horizon - 30 * DAY_MS) is None
    said = ("{} 2040-06-05T00:00:00Z cannot be learned (200 half-lives of "
            "affinity_half_life_days and trending_half_life_days after decay_anchor_ms "
            "2024-01-01T00:00:00Z) and are dead-lettered: set STREAMREC_DECAY_ANCHOR_MS to "
            "about now (a new state)")
    assert decay_horizon_notice(settings, now_ms=horizon - 30 * DAY_MS + 1) == (
        logging.WARNING, said.format("interactions stamped after"))
    assert decay_horizon_notice(settings, now_ms=horizon + 1) == (
        logging.ERROR, said.format("interactions stamped since"))
