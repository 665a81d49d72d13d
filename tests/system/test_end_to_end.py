"""The whole flow on real servers: Kafka -> worker -> Redis -> HTTP, and back as impressions."""

import asyncio
import json
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest
import redis
from aiokafka import AIOKafkaConsumer

from streamrec.contract import RedisKeys, Settings, ensure_topics, produce_records
from tests.support.processes import ChildProcesses, wait_for
from tests.support.servers import Servers


@dataclass
class System:
    settings: Settings
    base: str
    http: httpx.Client
    redis: redis.Redis

    def recommendations(self, user: str, **params: object) -> dict:
        response = self.http.get(f"{self.base}/v1/users/{user}/recommendations", params=params)
        assert response.status_code == 200, response.text
        return response.json()

    def recent_items(self, user: str) -> set[str]:
        key = RedisKeys(self.settings.key_prefix).user_recent(user)
        return {m.decode() for m in self.redis.zrange(key, 0, -1)}

    def counters(self) -> dict[str, int]:
        return self.http.get(f"{self.base}/v1/metrics").json()["counters"]


@pytest.fixture(scope="module")
def system(servers: Servers, tmp_path_factory: pytest.TempPathFactory) -> Iterator[System]:
    settings = servers.settings()
    asyncio.run(ensure_topics(settings))
    children = ChildProcesses(settings, tmp_path_factory.mktemp("e2e"))
    try:
        children.start_worker()
        _, base = children.start_service()
        with httpx.Client(timeout=5) as http, redis.Redis.from_url(settings.redis_url) as client:
            running = System(settings, base, http, client)
            # The worker is ready once a probe event posted over HTTP has been applied.
            http.post(f"{base}/v1/events", json={"user_id": "probe", "item_id": "probe",
                                                 "event_type": "view"})
            wait_for(lambda: running.counters().get("events_applied"), "the worker", 60)
            yield running
    finally:
        children.stop_all()


def now_ms() -> int:
    return int(time.time() * 1000)


def event(user: str, item: str, event_type: str = "view", **extra: object) -> dict:
    return {"event_id": uuid.uuid4().hex, "user_id": user, "item_id": item,
            "event_type": event_type, "timestamp": now_ms(), **extra}


async def produce(settings: Settings, topic: str, values: list[bytes], key: bytes) -> None:
    await produce_records(settings, topic, ((key, value) for value in values))


def post(system: System, path: str, body: object) -> httpx.Response:
    return system.http.post(f"{system.base}{path}", json=body)


def item_ids(body: dict) -> list[str]:
    return [item["item_id"] for item in body["items"]]


def test_events_through_kafka_and_http_change_recommendations(system: System) -> None:
    tag = uuid.uuid4().hex[:6]
    shoes, laces, polish = f"shoes-{tag}", f"laces-{tag}", f"polish-{tag}"
    # Other shoppers buy shoes with laces (and polish): co-occurrence to learn from. Shoes
    # come last, so no "next after shoes" rule can claim laces (events produced within one
    # millisecond or across two would make that rule come and go between runs).
    history = [event(f"{tag}-shopper0", polish)]
    history += [event(f"{tag}-shopper{k}", item) for k in range(3) for item in (laces, shoes)]
    asyncio.run(produce(system.settings, system.settings.events_topic,
                        [json.dumps(e).encode() for e in history], key=b"shoppers"))
    user = f"{tag}-newcomer"
    assert all(i["source"] == "trending" for i in system.recommendations(user)["items"])

    # The newcomer looks at shoes (through the HTTP API, no event id or timestamp given).
    accepted = post(system, "/v1/events", {"user_id": user, "item_id": shoes,
                                           "event_type": "view"})
    assert accepted.status_code == 202, accepted.text
    assert len(accepted.json()["ids"]) == 1

    def learned() -> dict | None:  # laces may lead as trending before the view is applied
        body = system.recommendations(user, n=3)
        top = body["items"][0]
        return body if (top["item_id"], top["source"]) == (laces, "co-occurrence") else None

    body = wait_for(learned, "laces to be recommended after shoes", timeout=10)
    first = body["items"][0]
    assert first["source"] == "co-occurrence"
    assert first["reason"] == f"because you viewed {shoes}"
    assert shoes not in item_ids(body)  # seen
    assert body["freshness"]["scope"] == "user"
    assert body["freshness"]["applied_ms_ago"] < 60_000


def test_planted_co_purchase_pair_are_each_others_top_similar(system: System) -> None:
    tag = uuid.uuid4().hex[:6]
    left, right = f"left-{tag}", f"right-{tag}"
    events = []
    for k in range(6):
        user = f"{tag}-buyer{k}"
        events += [event(user, f"noise-{tag}-{k}"), event(user, left, "purchase"),
                   event(user, right, "purchase"), event(user, f"noise-{tag}-{k + 1}")]
    assert post(system, "/v1/events", events).status_code == 202

    def top_similar(item: str) -> str | None:
        body = system.http.get(f"{system.base}/v1/items/{item}/similar", params={"n": 3}).json()
        return body["items"][0]["item_id"] if body["items"] else None

    wait_for(lambda: top_similar(left) == right, "right to be most similar to left", 10)
    assert top_similar(right) == left


def test_served_lists_come_back_as_impressions_and_clicks_count(system: System) -> None:
    tag = uuid.uuid4().hex[:6]
    catalogue = [{"item_id": f"{tag}-{k}", "categories": [f"cat{tag}"]} for k in range(3)]
    assert post(system, "/v1/items", catalogue).status_code == 202
    assert post(system, "/v1/events", [event(f"{tag}-fan", f"{tag}-{k}", "purchase")
                                       for k in range(3)]).status_code == 202
    wait_for(lambda: system.http.get(f"{system.base}/v1/trending", params={
        "category": f"cat{tag}"}).json()["items"], "category trending", 10)

    before = system.http.get(f"{system.base}/v1/metrics").json()["recommenders"]
    served = system.http.get(f"{system.base}/v1/trending",
                             params={"category": f"cat{tag}", "n": 3, "user_id": f"{tag}-viewer"}
                             ).json()
    assert len(served["items"]) == 3
    clicked = served["items"][0]["item_id"]
    assert post(system, "/v1/events", event(f"{tag}-viewer", clicked, "click",
                                            recommendation_id=served["recommendation_id"])
                ).status_code == 202

    def trending_metrics() -> dict | None:
        now = system.http.get(f"{system.base}/v1/metrics").json()["recommenders"].get(
            "trending", {"events": {}})
        old = before.get("trending", {"events": {}})["events"]
        grown = {k: v - old.get(k, 0) for k, v in now["events"].items()}
        return grown if grown.get("click") else None

    assert wait_for(trending_metrics, "the impression and the click", 10) == {
        "impression": 1, "items_shown": 3, "click": 1}


def test_a_served_lists_weightings_are_judged_by_the_users_next_new_item(system: System
                                                                       ) -> None:
    tag = uuid.uuid4().hex[:6]
    shoes, laces, user = f"shoes-{tag}", f"laces-{tag}", f"{tag}-shopper"
    shoppers = [event(f"{tag}-buyer{k}", item) for k in range(3) for item in (shoes, laces)]
    assert post(system, "/v1/events", [*shoppers, event(user, shoes)]).status_code == 202
    wait_for(lambda: item_ids(system.recommendations(user, n=3))[:1] == [laces],
             "laces to be recommended after shoes", 10)
    waiting_key = RedisKeys(system.settings.key_prefix).user_weighting_lists(user)
    waiting = wait_for(lambda: system.redis.hgetall(waiting_key), "the list's impression", 10)
    before = system.http.get(f"{system.base}/v1/metrics").json()["blend"]

    assert post(system, "/v1/events", event(user, laces)).status_code == 202
    def judged() -> dict | None:
        blend = system.http.get(f"{system.base}/v1/metrics").json()["blend"]
        return blend if blend["trials"] != before["trials"] else None

    after = wait_for(judged, "the judgement", 10)
    kept = 1 - 1 / system.settings.blend_evidence_horizon
    assert after["trials"] == pytest.approx(before["trials"] * kept + 1)
    assert laces in waiting[b"1:1"].decode().split("\x1f")  # the served weighting's list
    for label, ids in waiting.items():
        held = laces in ids.decode().split("\x1f")
        assert after["hit_rates"][label.decode()] * after["trials"] == pytest.approx(
            before["hit_rates"].get(label.decode(), 0) * before["trials"] * kept + held)
    assert not system.redis.exists(waiting_key)


def test_bad_records_go_to_dead_letter_and_the_good_ones_around_them_apply(system: System
                                                                          ) -> None:
    tag = uuid.uuid4().hex[:6]
    user = f"{tag}-user"
    bad = [b"\xff\xfe garbage", b'{"user_id": "' + user.encode() + b'"}',
           json.dumps(event(user, "x", "teleport")).encode()]
    values = [json.dumps(event(user, f"{tag}-before")).encode(), *bad,
              json.dumps(event(user, f"{tag}-after")).encode()]
    settings = system.settings
    asyncio.run(produce(settings, settings.events_topic, values, key=user.encode()))

    wait_for(lambda: system.recent_items(user) == {f"{tag}-before", f"{tag}-after"},
             "the good events to apply", 10)

    async def dead_letters() -> dict[bytes, str]:
        consumer = AIOKafkaConsumer(settings.dead_letter_topic, auto_offset_reset="earliest",
                                    bootstrap_servers=settings.kafka_bootstrap_servers)
        await consumer.start()
        found: dict[bytes, str] = {}
        try:
            deadline = time.monotonic() + 15
            while len(found) < len(bad) and time.monotonic() < deadline:
                for records in (await consumer.getmany(timeout_ms=500)).values():
                    for record in records:
                        if record.key == user.encode():
                            found[record.value] = dict(record.headers)["streamrec.reason"].decode()
        finally:
            await consumer.stop()
        return found

    found = asyncio.run(dead_letters())
    assert set(found) == set(bad)  # the original bytes, each once
    assert "Invalid JSON" in found[bad[0]]
    assert "item_id: Field required" in found[bad[1]]
    assert "unknown event_type 'teleport'" in found[bad[2]]


def test_http_rejects_bad_input_with_messages_that_say_what_to_fix(system: System) -> None:
    response = post(system, "/v1/events", [event("u", "i"), event("u", "i", "teleport")])
    assert response.status_code == 422
    assert response.json()["error"] == "invalid records; nothing was accepted"
    assert response.json()["details"] == [
        "[1] event_type: unknown event_type 'teleport'; expected one of "
        "['add_to_cart', 'click', 'impression', 'purchase', 'view']"]
    naive = post(system, "/v1/events", {"user_id": "u", "item_id": "i", "event_type": "view",
                                        "timestamp": "2026-01-01T00:00:00"})
    assert naive.json()["details"] == ["[0] timestamp: timestamp has no timezone; add one "
                                       "(e.g. Z or +01:00)"]
    json_type = {"content-type": "application/json"}
    garbage = system.http.post(f"{system.base}/v1/events", content=b"{not json",
                               headers=json_type)
    assert garbage.status_code == 422
    assert garbage.json()["error"].startswith("request body is not valid JSON")
    huge = system.http.post(f"{system.base}/v1/events", content=b"[" + b" " * 2_000_000 + b"]",
                            headers=json_type)
    assert huge.status_code == 413
    too_many = system.http.get(f"{system.base}/v1/users/u/recommendations", params={"n": 0})
    assert too_many.status_code == 422
    assert too_many.json()["details"] == ["query.n: Input should be greater than or equal to 1"]


def test_preferences_and_anonymous_sessions_over_http(system: System) -> None:
    tag = uuid.uuid4().hex[:6]
    catalogue = [{"item_id": f"{tag}-{k}", "categories": [f"cat{tag}-{k % 2}"]}
                 for k in range(4)]
    assert post(system, "/v1/items", catalogue).status_code == 202
    # One shopper pairs 0 with 2, another 1 with 3; every item gets some trending.
    assert post(system, "/v1/events", [event(f"{tag}-s{k % 2}", f"{tag}-{k}") for k in range(4)]
                ).status_code == 202
    wait_for(lambda: system.http.get(f"{system.base}/v1/trending", params={
        "category": f"cat{tag}-1"}).json()["items"], "the catalogue and events", 10)

    user = f"{tag}-newcomer"
    url = f"{system.base}/v1/users/{user}/preferences"
    stored = system.http.put(url, json={"categories": [f"cat{tag}-1"]})
    assert stored.status_code == 200, stored.text
    assert system.http.get(url).json() == {"categories": [f"cat{tag}-1"]}
    first = system.recommendations(user, n=2)["items"]
    assert {i["item_id"] for i in first} == {f"{tag}-1", f"{tag}-3"}
    assert first[0]["reason"] == f"trending in cat{tag}-1, which you like"
    bad = system.http.put(url, json={"categories": ["a|b"]})
    assert bad.status_code == 422
    assert bad.json()["details"][0] == "body.categories.0: must not contain '|'"

    session = post(system, "/v1/sessions/recommendations", {"items": [f"{tag}-0"], "n": 1})
    assert session.status_code == 200, session.text
    assert item_ids(session.json()) == [f"{tag}-2"]
    assert session.json()["recommender"] == "session"
    wrong = post(system, "/v1/sessions/recommendations", {"item": [f"{tag}-0"]})
    assert wrong.status_code == 422
    assert "body.items: Field required" in wrong.json()["details"]


def test_health_and_readiness(system: System) -> None:
    assert system.http.get(f"{system.base}/healthz").json() == {"status": "ok"}
    assert system.http.get(f"{system.base}/readyz").json() == {
        "status": "ready", "redis": True, "kafka": True, "stalled": {}, "pseudonym_key": True}
    assert system.http.get(f"{system.base}/openapi.json").status_code == 200


def test_only_lists_the_service_served_credit_a_recommender(system: System) -> None:
    """A write key cannot credit a recommender with a list the service never served: over
    HTTP such an impression gets 422; produced to Kafka unsigned or with a made-up signature,
    it is dead-lettered, and a click on its items counts for no recommender. What an app
    showed on its own still goes in, as unattributed."""
    tag = uuid.uuid4().hex[:6]
    user = f"{tag}-forger"

    def impression(recommendation_id: str, **extra: object) -> dict:
        return {"event_id": uuid.uuid4().hex, "user_id": user, "event_type": "impression",
                "item_ids": [f"{tag}-a", f"{tag}-b"], "recommender": "trending",
                "recommendation_id": recommendation_id, "timestamp": now_ms(), **extra}

    refused = post(system, "/v1/events", impression(f"{tag}-http"))
    assert refused.status_code == 422
    assert "must be one the service published (signed)" in refused.json()["details"][0]
    before = system.http.get(f"{system.base}/v1/metrics").json()["recommenders"].get(
        "trending", {"events": {}})["events"]
    dead_before = system.counters().get("dead_lettered", 0)
    forged = [impression(f"{tag}-kafka"), impression(f"{tag}-made-up", signature="0" * 32)]
    settings = system.settings
    asyncio.run(produce(settings, settings.events_topic,
                        [json.dumps(record).encode() for record in forged], key=user.encode()))
    wait_for(lambda: system.counters().get("dead_lettered", 0) == dead_before + 2,
             "both forged impressions dead-lettered", 15)
    clicks = [event(user, f"{tag}-a", "click", recommendation_id=f"{tag}-kafka"),
              event(user, f"{tag}-b", "click", recommendation_id=f"{tag}-made-up")]
    shown = impression(f"{tag}-app", recommender="unattributed")
    assert post(system, "/v1/events", [*clicks, shown]).status_code == 202
    shown_key = RedisKeys(settings.key_prefix).user_shown(user)
    wait_for(lambda: system.redis.lrange(shown_key, 0, -1), "the app's own impression", 15)
    after = system.http.get(f"{system.base}/v1/metrics").json()["recommenders"].get(
        "trending", {"events": {}})["events"]
    assert after == before
