"""An experiment through the real service and worker: defined by the admin API, served to
users by variant, its impressions and clicks counted per variant, read back as results."""

import asyncio
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest

from streamrec.contract import Experiment, ensure_topics
from streamrec.contract import assign as assigned_variant
from tests.support.processes import ChildProcesses, wait_for
from tests.support.servers import Servers


@dataclass
class Service:
    base: str
    http: httpx.Client

    def get(self, path: str, **params: object) -> httpx.Response:
        return self.http.get(f"{self.base}{path}", params=params)

    def post(self, path: str, body: object = None) -> httpx.Response:
        return self.http.post(f"{self.base}{path}", json=body)


@pytest.fixture(scope="module")
def service(servers: Servers, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    settings = servers.settings()
    asyncio.run(ensure_topics(settings))
    children = ChildProcesses(settings, tmp_path_factory.mktemp("experiments"))
    try:
        children.start_worker()
        _, base = children.start_service()
        with httpx.Client(timeout=10) as http:
            yield Service(base, http)
    finally:
        children.stop_all()


DEFINITION = {"name": "blend-vs-trending", "variants": [
    {"name": "trending", "share": 0.5, "settings": {"recommender": "trending"}},
    {"name": "blend", "share": 0.5, "settings": {"sequence_weight": 2}}]}


def test_a_variant_may_not_change_anything_but_recommendation_settings(service: Service
                                                                        ) -> None:
    wrong = {**DEFINITION, "name": "x", "variants": [
        DEFINITION["variants"][0], {"name": "b", "share": 0.5,
                                    "settings": {"redis_url": "redis://elsewhere"}}]}
    response = service.post("/v1/experiments", wrong)
    assert response.status_code == 422
    assert "redis_url: not a recommendation setting" in response.json()["details"][0]


def test_users_see_their_variant_and_its_feedback_is_counted(service: Service) -> None:
    tag = uuid.uuid4().hex[:6]
    item = f"item-{tag}"
    assert service.post("/v1/events", [  # something to serve: an item others viewed
        {"user_id": f"{tag}-fan{k}", "item_id": item, "event_type": "view"} for k in range(2)
    ]).status_code == 202
    wait_for(lambda: service.get("/v1/trending", n=1).json()["items"], "an item to serve")
    created = service.post("/v1/experiments", DEFINITION)
    assert created.status_code == 201, created.text
    assert service.post("/v1/experiments", DEFINITION).status_code == 409
    assert [e["name"] for e in service.get("/v1/experiments").json()] == [DEFINITION["name"]]

    users = [f"{tag}-user{k}" for k in range(6)]
    variants = {user: assigned_variant(Experiment(**DEFINITION), user) for user in users}
    served = {}
    for user in users:
        first = service.get(f"/v1/users/{user}/recommendations", n=1).json()
        again = service.get(f"/v1/users/{user}/recommendations", n=1).json()
        assert first["experiment"] == again["experiment"] == {
            "name": DEFINITION["name"], "variant": variants[user], "placed_by": None}
        assert first["recommender"] == (
            "trending" if variants[user] == "trending" else "personalised")
        served[user] = first
    clicker = users[0]
    clicked = served[clicker]["items"][0]["item_id"]
    assert service.post("/v1/events", {
        "user_id": clicker, "item_id": clicked, "event_type": "click",
        "recommendation_id": served[clicker]["recommendation_id"]}).status_code == 202

    def counted() -> dict | None:
        results = service.get(f"/v1/experiments/{DEFINITION['name']}/results").json()
        clicks = sum(v["clicks"] for v in results["variants"].values())
        lists = sum(v["lists"] for v in results["variants"].values())
        return results if (lists, clicks) == (12, 1) else None

    results = wait_for(counted, "the lists and the click to be counted", timeout=20)
    for name, variant in results["variants"].items():
        members = [u for u in users if variants[u] == name]
        assert (variant["users"], variant["lists"], variant["impressions"]) == (
            len(members), 2 * len(members), 2 * len(members))
        assert variant["clicks"] == (clicker in members)
    assert results["sample_ratio_mismatch"]["observed"] == {
        name: list(variants.values()).count(name) for name in ("trending", "blend")}
    [comparison] = results["comparisons"]
    assert (comparison["variant"], comparison["against"]) == ("blend", "trending")

    stopped = service.post(f"/v1/experiments/{DEFINITION['name']}/stop").json()
    assert stopped["stopped_at"] <= time.time() * 1000
    time.sleep(1.1)  # each service process re-reads the running experiment within a second
    after = service.get(f"/v1/users/{clicker}/recommendations", n=1).json()
    assert after["experiment"] is None
