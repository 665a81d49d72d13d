"""With STREAMREC_ID_HMAC_KEY, no raw user id reaches Redis or a log line, whichever way it
came in (HTTP bodies, paths and queries, Kafka records), and the same user is one user
whichever way their events arrive."""

import asyncio
import json
import subprocess
import sys
import time
from pathlib import Path

import httpx
import redis.asyncio
from pydantic import SecretStr

from stream_app.state_writer import StateWriter, StreamRecord
from streamrec.contract import (
    RedisKeys,
    Settings,
    ensure_topics,
    parse_event,
    produce_records,
    pseudonymise,
)
from streamrec.servers import child_environment
from tests.support.processes import ChildProcesses, wait_for
from tests.support.servers import Servers
from tests.support.state import dump_state

KEY = "a secret only the operator knows"
RAW = ("alice-RAW-7", "bob-RAW-8", "carol-RAW-9")


def test_no_raw_user_id_is_stored_or_logged(servers: Servers, tmp_path: Path) -> None:
    settings = servers.settings(id_hmac_key=KEY)
    asyncio.run(ensure_topics(settings))
    alice, bob, carol = RAW
    children = ChildProcesses(settings, tmp_path)
    try:
        children.start_worker()
        _, base = children.start_service()
        posted = [{"user_id": user, "item_id": item, "event_type": "view"}
                  for user in (alice, carol) for item in ("x", "y")]
        assert httpx.post(f"{base}/v1/events", json=posted).status_code == 202
        asyncio.run(produce_records(settings, settings.events_topic, [
            (bob.encode(), json.dumps({"event_id": f"b{k}", "user_id": bob, "item_id": item,
                                       "event_type": "view", "timestamp": 1_764_000_000_000 + k}
                                      ).encode()) for k, item in enumerate(("x", "z"))]))
        bob_key = RedisKeys(settings.key_prefix).user_recent(pseudonymise(bob, KEY.encode()))

        async def bob_learned() -> bool:
            client = redis.asyncio.Redis.from_url(settings.redis_url)
            try:
                return bool(await client.exists(bob_key))
            finally:
                await client.aclose()

        wait_for(lambda: asyncio.run(bob_learned()), "bob's events from Kafka", 30)
        # bob by his own id over HTTP is the user the worker learned from Kafka
        listed = wait_for(lambda: httpx.get(f"{base}/v1/users/{bob}/recommendations").json()[
            "items"], "bob's list", 30)
        assert "x" not in {item["item_id"] for item in listed}  # his seen item is filtered
        assert httpx.get(f"{base}/v1/trending", params={"user_id": alice}).status_code == 200
        assert httpx.put(f"{base}/v1/users/{alice}/preferences",
                         json={"categories": ["c"]}).status_code == 200
        assert httpx.delete(f"{base}/v1/users/{carol}", timeout=30).json()["status"] == "done"

        async def everything_stored() -> str:
            client = redis.asyncio.Redis.from_url(settings.redis_url)
            try:
                return repr(await dump_state(client, settings.key_prefix))
            finally:
                await client.aclose()

        stored = asyncio.run(everything_stored())
        logged = "".join(path.read_text(errors="replace") for path in tmp_path.glob("*.log"))
        assert "/v1/users/p_" in logged  # the access log is there, with pseudonyms
        for raw in RAW:
            assert raw not in stored and raw not in logged
    finally:
        children.stop_all()


def test_another_pseudonym_key_is_refused_wherever_a_user_is_named(servers: Servers,
                                                                     tmp_path: Path) -> None:
    """Under another key a user's pseudonym is not the one their events were learned under:
    what a service or `streamrec forget` read or wrote for them would be no one's state, and
    an erasure would say "done" having erased no one."""
    settings = servers.settings(id_hmac_key=KEY, erasure_wait_seconds=0.5)
    rotated = settings.model_copy(update={"id_hmac_key": SecretStr(KEY + " rotated")})
    asyncio.run(ensure_topics(settings))

    async def learn_one_event() -> None:  # the worker's writer records the key's fingerprint
        client = redis.asyncio.Redis.from_url(settings.redis_url)
        try:
            await StateWriter(client, settings).apply([StreamRecord("events:0", 0, parse_event(
                {"event_id": "a1", "user_id": "alice", "item_id": "x", "event_type": "view",
                 "timestamp": int(time.time() * 1000)}, settings))])
        finally:
            await client.aclose()

    asyncio.run(learn_one_event())
    children = ChildProcesses(settings, tmp_path)
    try:
        _, same = children.start_service()
        _, other = children.start_service(rotated)
        assert httpx.get(f"{same}/readyz", timeout=10).json()["pseudonym_key"] is True
        report = httpx.get(f"{other}/readyz", timeout=10)
        assert report.status_code == 503 and report.json()["pseudonym_key"] is False
        for method, path, body in [
                ("DELETE", "/v1/users/alice", None),
                ("GET", "/v1/users/alice/recommendations", None),
                ("PUT", "/v1/users/alice/preferences", {"categories": ["c"]}),
                ("GET", "/v1/trending?user_id=alice", None),
                ("POST", "/v1/events", {"user_id": "alice", "item_id": "y",
                                        "event_type": "view"})]:
            refused = httpx.request(method, f"{other}{path}", json=body, timeout=10)
            assert refused.status_code == 503, (method, path)
            assert "STREAMREC_ID_HMAC_KEY" in refused.json()["error"]
        assert httpx.get(f"{other}/v1/trending", timeout=10).status_code == 200  # no user
        accepted = httpx.delete(f"{same}/v1/users/alice", timeout=30)  # no worker runs here
        assert accepted.status_code == 202 and accepted.json()["status"] == "pending"
    finally:
        children.stop_all()

    def forget(user: str, under: Settings) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "streamrec", "forget", user, "--wait",
                               "0"], env=child_environment(under), capture_output=True,
                              text=True, timeout=60)

    refused = forget("alice", rotated)
    assert refused.returncode == 2 and "STREAMREC_ID_HMAC_KEY" in refused.stderr
    invalid = forget("alice ", settings)  # no one's id: refused before any pseudonym
    assert invalid.returncode == 2 and "blanks" in invalid.stderr
