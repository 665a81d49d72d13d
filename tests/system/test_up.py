"""`streamrec up --data-dir DIR`: Ctrl-C drains before it stops (nothing posted is lost),
a restart from the same directory keeps the state and applies new events once, and a
kill -9 of every process after the events were applied doubles nothing."""

import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from streamrec.servers import free_port, wait_until_healthy
from tests.support.processes import alive, children_of, wait_for

pytestmark = pytest.mark.slow


def start_up(data_dir: Path, port: int, log: Path) -> subprocess.Popen:
    env = {**os.environ, "STREAMREC_HTTP_PORT": str(port)}
    process = subprocess.Popen([sys.executable, "-m", "streamrec", "up", "--data-dir",
                                str(data_dir)], stdout=log.open("ab"),
                               stderr=subprocess.STDOUT, env=env)
    wait_until_healthy(f"http://127.0.0.1:{port}", process, 60)
    return process


def post_views(base: str, first: int, count: int) -> None:
    for start in range(first, first + count, 500):
        batch = [{"event_id": f"e{k}", "user_id": f"u{k % 40}", "item_id": f"i{k % 53}",
                  "event_type": "view"} for k in range(start, min(start + 500, first + count))]
        assert httpx.post(f"{base}/v1/events", json=batch, timeout=10).status_code == 202


def applied(base: str) -> int:
    return httpx.get(f"{base}/v1/metrics").json()["counters"].get("events_applied", 0)


def test_up_drains_on_ctrl_c_and_restarts_where_it_stopped(tmp_path: Path) -> None:
    data, log = tmp_path / "data", tmp_path / "up.log"
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    up = start_up(data, port, log)
    try:
        post_views(base, 0, 2000)
        up.send_signal(signal.SIGINT)  # at once: most of the 2000 are not applied yet
        assert up.wait(timeout=90) == 0, log.read_text()[-3000:]
        assert "stopped before the worker applied" not in log.read_text()

        up = start_up(data, port, log)
        assert applied(base) == 2000  # every posted event survived the stop
        post_views(base, 2000, 100)
        wait_for(lambda: applied(base) == 2100, "the new events", 60, 0.2)

        everything = {up.pid, *children_of(up.pid)}
        for pid in everything:
            os.kill(pid, signal.SIGKILL)
        wait_for(lambda: not any(alive(pid) for pid in everything), "every process to die", 10)
        up = start_up(data, port, log)
        assert applied(base) == 2100
        post_views(base, 2100, 10)
        wait_for(lambda: applied(base) == 2110, "events after the kill -9", 60, 0.2)
        counters = httpx.get(f"{base}/v1/metrics").json()["counters"]
        assert counters["duplicate_events"] == 0
    finally:
        if up.poll() is None:
            up.send_signal(signal.SIGINT)
            up.wait(timeout=90)
