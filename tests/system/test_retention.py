"""Retention: `streamrec sweep` erases, by the exact path, the users whose newest event is
older than STREAMREC_USER_RETENTION_DAYS as of its clock, and no one else."""

import asyncio
import json
import subprocess
import sys
import time
from pathlib import Path

import redis

from streamrec.contract import RedisKeys, ensure_topics, produce_records
from streamrec.servers import child_environment
from tests.support.processes import ChildProcesses, wait_for
from tests.support.servers import Servers

DAY_MS = 86_400_000


def test_sweep_erases_exactly_the_users_past_the_retention(servers: Servers,
                                                           tmp_path: Path) -> None:
    settings = servers.settings(user_retention_days=30)
    asyncio.run(ensure_topics(settings))
    now = int(time.time() * 1000)
    last_seen = {"gone": now - 40 * DAY_MS, "stays": now - 20 * DAY_MS, "new": now}
    records = [(user.encode(), json.dumps({
        "event_id": f"{user}-{k}", "user_id": user, "item_id": f"i{k}", "event_type": "view",
        "timestamp": at - (1 - k) * 1000}).encode())
        for user, at in last_seen.items() for k in range(2)]
    children = ChildProcesses(settings, tmp_path)
    keys = RedisKeys(settings.key_prefix)
    try:
        children.start_worker()
        asyncio.run(produce_records(settings, settings.events_topic, records))
        with redis.Redis.from_url(settings.redis_url) as client:
            wait_for(lambda: int(client.hget(keys.counters, "events_applied") or 0) == 6,
                     "the events", 60, 0.2)

            def sweep(now_ms: int) -> list[str]:
                done = subprocess.run(
                    [sys.executable, "-m", "streamrec", "sweep", "--now-ms", str(now_ms)],
                    capture_output=True, text=True, timeout=60, env=child_environment(settings))
                assert done.returncode == 0, done.stderr
                return done.stdout.split()

            assert len(sweep(now)) == 2  # one erasure: id and pseudonym
            wait_for(lambda: client.hlen(keys.erasures) == 1, "the erasure", 30, 0.2)
            assert not client.exists(keys.user_recent("gone"))
            assert client.exists(keys.user_recent("stays")) and client.exists(
                keys.user_recent("new"))
            assert client.zscore(keys.popularity, "i0") == 2.0  # gone's i0 view taken out
            assert len(sweep(now + 15 * DAY_MS)) == 2  # "stays" is now 35 days old
            wait_for(lambda: client.hlen(keys.erasures) == 2, "the second erasure", 30, 0.2)
            assert client.exists(keys.user_recent("new"))
    finally:
        children.stop_all()
