"""Erasure through the real service and worker: DELETE /v1/users/{id} (admin) answers once
the user's influence is gone (an item only they brought into another's similar list is gone
from it on the next response), the audit lists it, and `streamrec forget` does the same from
the command line. The exact arithmetic is in tests/integration/test_state_writer.py."""

import asyncio
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from streamrec.contract import create_key, ensure_topics, pseudonym
from streamrec.servers import child_environment
from tests.support.processes import ChildProcesses, wait_for
from tests.support.servers import Servers


@pytest.fixture(scope="module")
def service(servers: Servers, tmp_path_factory: pytest.TempPathFactory
            ) -> Iterator[tuple[str, dict[str, str], dict[str, str], object]]:
    logs = tmp_path_factory.mktemp("erasure")
    keys = {name: {"Authorization": f"Bearer {create_key(logs / 'keys.json', name, scopes)}"}
            for name, scopes in (("app", ["read", "write"]), ("admin", ["admin"]))}
    settings = servers.settings(auth="required", api_keys_file=logs / "keys.json")
    asyncio.run(ensure_topics(settings))
    children = ChildProcesses(settings, logs)
    try:
        children.start_worker()
        _, base = children.start_service()
        yield base, keys["app"], keys["admin"], settings
    finally:
        children.stop_all()


def similar_to(base: str, key: dict[str, str], item: str) -> list[str]:
    body = httpx.get(f"{base}/v1/items/{item}/similar", params={"n": 5}, headers=key).json()
    return [i["item_id"] for i in body["items"] if i["source"] == "co-occurrence"]


def views(user: str, *items: str) -> list[dict[str, str]]:
    return [{"user_id": user, "item_id": item, "event_type": "view"} for item in items]


def test_delete_takes_the_users_influence_out_before_it_answers(service: tuple) -> None:
    base, app, admin, _ = service
    posted = [*views("honest", "shoe", "sock"), *views("leaver", "shoe", "secret")]
    assert httpx.post(f"{base}/v1/events", json=posted, headers=app).status_code == 202
    wait_for(lambda: "secret" in similar_to(base, app, "shoe"), "the leaver's pair", 30)

    assert httpx.delete(f"{base}/v1/users/leaver", headers=app).status_code == 403
    erased = httpx.delete(f"{base}/v1/users/leaver", headers=admin, timeout=30)
    assert erased.status_code == 200, erased.text
    assert erased.json()["status"] == "done"
    assert erased.json()["user"] == pseudonym("leaver")
    assert similar_to(base, app, "shoe") == ["sock"]  # the very next response
    audit = httpx.get(f"{base}/v1/erasures", headers=admin).json()
    assert [entry["erasure_id"] for entry in audit] == [erased.json()["erasure_id"]]
    assert "leaver" not in json.dumps(audit)


def test_the_cli_forgets_through_the_same_path(service: tuple, tmp_path: Path) -> None:
    base, app, _, settings = service
    assert httpx.post(f"{base}/v1/events", json=views("cli-user", "hat", "scarf"),
                      headers=app).status_code == 202
    wait_for(lambda: "scarf" in similar_to(base, app, "hat"), "the pair", 30)
    done = subprocess.run([sys.executable, "-m", "streamrec", "forget", "cli-user"],
                          capture_output=True, text=True, timeout=60,
                          env=child_environment(settings))
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["user"] == pseudonym("cli-user")
    assert similar_to(base, app, "hat") == []


def test_posting_a_forget_event_is_refused(service: tuple) -> None:
    base, app, _, _ = service
    refused = httpx.post(f"{base}/v1/events", headers=app, json={
        "user_id": "someone", "event_type": "forget"})
    assert refused.status_code == 422
    assert "DELETE /v1/users/{user_id}" in refused.json()["details"][0]


def test_the_profile_shows_what_the_service_holds_about_a_user(service: tuple) -> None:
    base, app, admin, _ = service
    assert httpx.post(f"{base}/v1/items", headers=admin, json={
        "item_id": "boot", "categories": ["shoes"]}).status_code == 403  # admin is not catalogue
    at = int(time.time() * 1000) - 5000
    posted = [{"user_id": "portrait", "item_id": item, "event_type": kind, "timestamp": at + k}
              for k, (item, kind) in enumerate([("boot", "view"), ("lace", "view"),
                                                ("boot", "purchase")])]
    assert httpx.post(f"{base}/v1/events", json=posted, headers=app).status_code == 202
    assert httpx.put(f"{base}/v1/users/portrait/preferences", headers=app,
                     json={"categories": ["shoes"]}).status_code == 200
    url = f"{base}/v1/users/portrait/profile"
    assert httpx.get(url, headers=app).status_code == 403
    wait_for(lambda: httpx.get(url, headers=admin).json()["events_by_type"].get("purchase"),
             "the purchase", 30)
    profile = httpx.get(url, headers=admin).json()
    assert [(r["item_id"], r["event_type"], r["at_ms"]) for r in profile["recent"]] == [
        ("boot", "purchase", at + 2), ("lace", "view", at + 1)]
    assert profile["events_by_type"] == {"view": 2, "purchase": 1}
    assert (profile["first_seen_ms"], profile["last_seen_ms"]) == (at, at + 2)
    assert profile["stated_preferences"] == ["shoes"]
    assert (profile["lists_shown"], profile["lists_acted_on"]) == (0, 0)


def test_the_profile_counts_lists_shown_and_acted_on(service: tuple) -> None:
    base, app, admin, _ = service
    url = f"{base}/v1/users/portrait/profile"
    served = httpx.get(f"{base}/v1/users/portrait/recommendations", headers=app).json()
    assert served["items"]
    wait_for(lambda: httpx.get(url, headers=admin).json()["lists_shown"] == 1, "the list", 30)
    assert httpx.post(f"{base}/v1/events", headers=app, json={
        "user_id": "portrait", "item_id": served["items"][0]["item_id"], "event_type": "click",
        "recommendation_id": served["recommendation_id"]}).status_code == 202
    wait_for(lambda: httpx.get(url, headers=admin).json()["lists_acted_on"] == 1,
             "the click on it", 30)
