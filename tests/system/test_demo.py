"""The README's first command: the embedded demo serves personalised recommendations, its
experiment declares the better variant, and Ctrl-C leaves no process behind."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from streamrec.servers import free_port
from tests.support.processes import alive, children_of, printed_keys, wait_for

pytestmark = pytest.mark.slow


def test_demo_serves_then_ctrl_c_stops_every_child(tmp_path: Path) -> None:
    port = free_port()
    env = {**os.environ, "STREAMREC_HTTP_PORT": str(port), "COLUMNS": "160"}
    demo = subprocess.Popen([sys.executable, "-m", "streamrec", "demo", "--rate", "300"],
                            cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    output = []
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            line = demo.stdout.readline()
            output.append(line)
            if "Ctrl-C stops everything" in line or demo.poll() is not None:
                break
        text = "".join(output)
        assert f"streamrec is serving at http://127.0.0.1:{port}" in text, text
        assert "co-occurrence" in text and "because you" in text, text
        keys = printed_keys(text)
        assert set(keys) == {"app", "admin"}, text
        app_key, admin_key = ({"Authorization": f"Bearer {keys[name]}"}
                              for name in ("app", "admin"))
        assert httpx.get(f"http://127.0.0.1:{port}/v1/trending?n=3").status_code == 401
        body = httpx.get(f"http://127.0.0.1:{port}/v1/trending?n=3", headers=app_key).json()
        assert len(body["items"]) == 3
        spawned = children_of(demo.pid)
        assert len(spawned) == 5, text  # broker, Redis, worker, service, traffic

        # The loop closes: shoppers click served items to their taste, so personalised lists
        # earn a higher CTR than trending ones (counted from here: the demo's own sample
        # requests above were impressions nobody clicked).
        def counts() -> dict[str, dict[str, int]]:
            recommenders = httpx.get(f"http://127.0.0.1:{port}/v1/metrics",
                                     headers=admin_key).json()["recommenders"]
            return {name: r["events"] for name, r in recommenders.items()}

        before = counts()

        def ctr_since_before() -> dict[str, float] | None:
            now = counts()
            grown = {name: {kind: n - before.get(name, {}).get(kind, 0)
                            for kind, n in events.items()} for name, events in now.items()}
            impressions = {name: g.get("items_shown", 0) for name, g in grown.items()}
            if impressions.get("personalised", 0) < 200 or impressions.get("trending", 0) < 100:
                return None
            return {name: grown[name].get("click", 0) / impressions[name]
                    for name in ("personalised", "trending")}

        ctr = wait_for(ctr_since_before, "impressions of both recommenders", 90)
        assert ctr["personalised"] > ctr["trending"] > 0, ctr

        # The demo's experiment: its results declare the blend better than trending only.
        def declared() -> dict | None:
            results = httpx.get(f"http://127.0.0.1:{port}/v1/experiments/blend-vs-trending/"
                                "results", headers=admin_key).json()
            [comparison] = results["comparisons"]
            return comparison if comparison["significant"] else None

        comparison = wait_for(declared, "the experiment's verdict", 240, interval=5)
        assert (comparison["variant"], comparison["against"]) == ("blend", "trending")
        assert comparison["lift"] > 0 and comparison["ci"][0] > 0
    finally:
        demo.send_signal(signal.SIGINT)
        rest, _ = demo.communicate(timeout=60)
    assert demo.returncode == 0, rest
    assert "stopped:" in rest
    assert [pid for pid in spawned if alive(pid)] == []
