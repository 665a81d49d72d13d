"""Planted shilling through the real service and worker, with the default new-user rule:
500 fake users in one POST do not make a spam item the top similar of a popular one, and
999 purchases in one POST (by one user, or by 999 new ones) do not top trending.
The exact rules are tested in tests/integration/test_shilling.py."""

import asyncio
from collections.abc import Iterator

import httpx
import pytest
import redis

from streamrec.contract import RedisKeys, Settings, ensure_topics
from tests.support.processes import ChildProcesses, wait_for
from tests.support.servers import Servers

HONEST_USERS = 20


@pytest.fixture(scope="module")
def system(servers: Servers, tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[tuple[str, Settings]]:
    default_rule = Settings.model_fields["shared_after_items"].default
    settings = servers.settings(shared_after_items=default_rule)
    asyncio.run(ensure_topics(settings))
    children = ChildProcesses(settings, tmp_path_factory.mktemp("shilling"))
    try:
        children.start_worker()
        _, base = children.start_service()
        yield base, settings
    finally:
        children.stop_all()


def post_and_wait(base: str, settings: Settings, events: list[dict]) -> None:
    store = redis.Redis.from_url(settings.redis_url)
    counters = RedisKeys(settings.key_prefix).counters
    before = int(store.hget(counters, "events_applied") or 0)
    answer = httpx.post(f"{base}/v1/events", json=events, timeout=30)
    assert answer.status_code == 202, answer.text
    wait_for(lambda: int(store.hget(counters, "events_applied") or 0) >= before + len(events),
             f"{len(events)} events applied", 60)


def top(base: str, path: str) -> str:
    return httpx.get(f"{base}{path}", params={"n": 1}).json()["items"][0]["item_id"]


def test_planted_attacks_do_not_take_the_top_spot(system: tuple[str, Settings]) -> None:
    base, settings = system
    honest = [{"user_id": f"honest{u}", "item_id": item, "event_type": event_type}
              for u in range(HONEST_USERS)
              for item, event_type in (("boots", "view"), ("laces", "purchase"),
                                       (f"hat{u}", "view"), (f"scarf{u}", "view"))]
    post_and_wait(base, settings, honest)
    assert top(base, "/v1/items/boots/similar") == "laces"
    assert top(base, "/v1/trending") == "laces"

    fake_pairs = [{"user_id": f"fake{u}", "item_id": item, "event_type": "purchase"}
                  for u in range(500) for item in ("boots", "spam")]
    post_and_wait(base, settings, fake_pairs)
    assert top(base, "/v1/items/boots/similar") == "laces"

    one_pump = [{"user_id": "pump", "item_id": "pumped", "event_type": "purchase"}] * 999
    post_and_wait(base, settings, one_pump)
    many_pumps = [{"user_id": f"buyer{u}", "item_id": "pumped", "event_type": "purchase"}
                  for u in range(999)]
    post_and_wait(base, settings, many_pumps)
    assert top(base, "/v1/trending") == "laces"

    # each event still reached the pump's own history, which their recommendations read
    profile = httpx.get(f"{base}/v1/users/pump/profile").json()
    assert profile["events_by_type"] == {"purchase": 999}
    assert [entry["item_id"] for entry in profile["recent"]] == ["pumped"]
