"""`streamrec up --data-dir DIR`: Ctrl-C drains before it stops (nothing posted is lost),
a restart from the same directory keeps the state and applies new events once, a kill -9 of
every process after the events were applied doubles nothing, and a restart with other
learning settings says that its worker cannot apply, and why."""

import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from streamrec.servers import free_port, wait_until_healthy
from tests.support.processes import alive, children_of, printed_keys, wait_for

pytestmark = pytest.mark.slow


def banners(log: Path) -> int:
    return log.read_text().count("streamrec is up") if log.exists() else 0


def start_up(data_dir: Path, port: int, log: Path, **environment: str) -> subprocess.Popen:
    """`streamrec up` as a child, once it has printed where everything is."""
    before = banners(log)
    env = {**os.environ, "STREAMREC_HTTP_PORT": str(port), **environment}
    process = subprocess.Popen([sys.executable, "-m", "streamrec", "up", "--data-dir",
                                str(data_dir)], stdout=log.open("ab"),
                               stderr=subprocess.STDOUT, env=env)
    try:
        wait_until_healthy(f"http://127.0.0.1:{port}", process, 60)
        wait_for(lambda: banners(log) > before, "its banner", 10)
    except BaseException:
        process.kill()  # its children die with it
        raise
    return process


def printed_headers(log: Path) -> dict[str, dict[str, str]]:
    """name -> Authorization header, for the keys `up` printed."""
    return {name: {"Authorization": f"Bearer {key}"}
            for name, key in printed_keys(log.read_text()).items()}


def post_views(base: str, key: dict[str, str], first: int, count: int) -> None:
    for start in range(first, first + count, 500):
        batch = [{"event_id": f"e{k}", "user_id": f"u{k % 40}", "item_id": f"i{k % 53}",
                  "event_type": "view"} for k in range(start, min(start + 500, first + count))]
        assert httpx.post(f"{base}/v1/events", json=batch, headers=key,
                          timeout=10).status_code == 202


def counters(base: str, key: dict[str, str]) -> dict[str, int]:
    return httpx.get(f"{base}/v1/metrics", headers=key).json()["counters"]


def test_up_drains_on_ctrl_c_and_restarts_where_it_stopped(tmp_path: Path) -> None:
    data, log = tmp_path / "data", tmp_path / "up.log"
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    up = start_up(data, port, log)
    try:
        keys = printed_headers(log)
        app, admin = keys["app"], keys["admin"]

        def applied() -> int:
            return counters(base, admin).get("events_applied", 0)

        post_views(base, app, 0, 2000)
        up.send_signal(signal.SIGINT)  # at once: most of the 2000 are not applied yet
        assert up.wait(timeout=90) == 0, log.read_text()[-3000:]
        assert "stopped before the worker applied" not in log.read_text()

        up = start_up(data, port, log)  # the keys file in the data directory is kept
        assert applied() == 2000  # every posted event survived the stop
        post_views(base, app, 2000, 100)
        wait_for(lambda: applied() == 2100, "the new events", 60, 0.2)

        everything = {up.pid, *children_of(up.pid)}
        for pid in everything:
            os.kill(pid, signal.SIGKILL)
        wait_for(lambda: not any(alive(pid) for pid in everything), "every process to die", 10)
        up = start_up(data, port, log)
        assert applied() == 2100
        post_views(base, app, 2100, 10)
        wait_for(lambda: applied() == 2110, "events after the kill -9", 60, 0.2)
        assert counters(base, admin)["duplicate_events"] == 0

        up.send_signal(signal.SIGINT)
        assert up.wait(timeout=90) == 0
        up = start_up(data, port, log, STREAMREC_PAIR_WINDOW="10")
        post_views(base, app, 2110, 1)
        wait_for(lambda: "not ready:" in log.read_text(), "up to say it is not ready", 30)
        said = log.read_text().split("not ready:")[-1]
        assert "stalled" in said and "pair_window: learned with 20, now 10" in said
        assert applied() == 2110
        everything = {up.pid, *children_of(up.pid)}  # a stalled worker would not drain
        for pid in everything:
            os.kill(pid, signal.SIGKILL)
        wait_for(lambda: not any(alive(pid) for pid in everything), "every process to die", 10)
    finally:
        if up.poll() is None:
            up.send_signal(signal.SIGINT)
            up.wait(timeout=90)
