"""What an operator sees, on real servers: the service's and the worker's Prometheus metrics
counting exactly, several service processes reporting one total, request ids, JSON logs,
and the monitoring in docker-compose.yml naming only metrics that exist."""

import asyncio
import json
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from streamrec.contract import Settings, create_key, ensure_topics, produce_records
from streamrec.servers import free_port
from tests.support.processes import ChildProcesses, wait_for
from tests.support.servers import Servers

ROOT = Path(__file__).resolve().parents[2]
NOW_MS = 1_764_000_000_000
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(url: str) -> Samples:
    response = httpx.get(url, timeout=10)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(response.text)
            for sample in family.samples}


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


@dataclass
class Operated:
    settings: Settings
    children: ChildProcesses
    base: str
    worker_metrics: str
    http: httpx.Client  # sends the admin key

    def service_log(self) -> list[str]:
        port = self.base.rsplit(":", 1)[1]
        return (self.children.logs / f"service-{port}.log").read_text().splitlines()

    def worker_caught_up(self) -> Samples | None:
        """The worker's metrics once every partition is applied to its end."""
        samples = scrape(self.worker_metrics)
        lags = [v for (name, _), v in samples.items() if name == "streamrec_worker_lag_records"]
        return samples if lags and not any(lags) else None


@pytest.fixture(scope="module")
def operated(servers: Servers, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Operated]:
    logs = tmp_path_factory.mktemp("operations")
    keys_file = logs / "keys.json"
    admin_key = create_key(keys_file, "operator", ["read", "write", "admin"])
    settings = servers.settings(worker_metrics_port=free_port(), log_format="json",
                                auth="required", api_keys_file=keys_file)
    asyncio.run(ensure_topics(settings))
    children = ChildProcesses(settings, logs)
    try:
        children.start_worker()
        _, base = children.start_service()
        with httpx.Client(timeout=10, headers={"Authorization": f"Bearer {admin_key}"}) as http:
            running = Operated(settings, children, base,
                               f"http://127.0.0.1:{settings.worker_metrics_port}/metrics", http)
            wait_for(lambda: _answers(running.worker_metrics), "the worker's /metrics", 60)
            yield running
    finally:
        children.stop_all()


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=5).status_code == 200
    except httpx.TransportError:
        return False


def event(user: str, item: str, event_type: str, number: int, event_id: str | None = None
          ) -> bytes:
    return json.dumps({"event_id": event_id or uuid.uuid4().hex, "user_id": user,
                       "item_id": item, "event_type": event_type,
                       "timestamp": NOW_MS + number}).encode()


def test_both_endpoints_count_exactly(operated: Operated) -> None:
    tag = uuid.uuid4().hex[:6]
    user, viewer = f"{tag}-shopper", f"{tag}-viewer"
    worker_before = wait_for(operated.worker_caught_up, "the worker to catch up", 60)
    service_before = scrape(f"{operated.base}/metrics")

    # Through Kafka: 3 views, 2 clicks, a purchase, an event id resent, two invalid records.
    kinds = ["view", "view", "view", "click", "click", "purchase"]
    records = [event(user, f"{tag}-item{k}", kind, k) for k, kind in enumerate(kinds)]
    records += [event(user, f"{tag}-item0", "view", 9, event_id="resent"),
                event(user, f"{tag}-item1", "view", 10, event_id="resent"),
                b"{not json", event(user, f"{tag}-item0", "like", 11)]
    asyncio.run(produce_records(operated.settings, operated.settings.events_topic,
                                [(user.encode(), record) for record in records]))
    # Through HTTP: an add to cart (202), a request without a key (401), an unknown path.
    posted = operated.http.post(f"{operated.base}/v1/events", json={
        "user_id": user, "item_id": f"{tag}-item5", "event_type": "add_to_cart"})
    assert posted.status_code == 202, posted.text
    assert httpx.get(f"{operated.base}/v1/users/{user}/recommendations").status_code == 401
    assert operated.http.get(f"{operated.base}/v1/nowhere/{user}").status_code == 404
    wait_for(lambda: value(scrape(operated.worker_metrics), "streamrec_worker_events_applied_total",
                           event_type="add_to_cart")
             > value(worker_before, "streamrec_worker_events_applied_total",
                     event_type="add_to_cart"), "the add to cart to be applied", 30)

    # Two trending lists of 3 shown to a known user: each published back as an impression.
    for _ in range(2):
        served = operated.http.get(f"{operated.base}/v1/trending",
                                   params={"n": 3, "user_id": viewer})
        assert served.status_code == 200 and len(served.json()["items"]) == 3, served.text
    wait_for(lambda: value(scrape(operated.worker_metrics), "streamrec_worker_events_applied_total",
                           event_type="impression")
             == value(worker_before, "streamrec_worker_events_applied_total",
                      event_type="impression") + 2, "both impressions to be applied", 30)
    worker_after = wait_for(operated.worker_caught_up, "the worker to catch up", 30)
    service_after = scrape(f"{operated.base}/metrics")

    def worker(name: str, **labels: str) -> float:
        return value(worker_after, name, **labels) - value(worker_before, name, **labels)

    def service(name: str, **labels: str) -> float:
        return value(service_after, name, **labels) - value(service_before, name, **labels)

    applied = {kind: worker("streamrec_worker_events_applied_total", event_type=kind)
               for kind in ("view", "click", "purchase", "add_to_cart", "impression")}
    assert applied == {"view": 4, "click": 2, "purchase": 1, "add_to_cart": 1, "impression": 2}
    assert worker("streamrec_worker_duplicate_events_total") == 1
    assert worker("streamrec_worker_dead_lettered_total", reason="json_invalid") == 1
    assert worker("streamrec_worker_dead_lettered_total", reason="value_error") == 1
    assert worker("streamrec_worker_redelivered_skipped_total") == 0
    # 10 records produced, 1 posted, 2 impressions: every one in some batch; all but the two
    # invalid ones timed from produce to applied.
    assert worker("streamrec_worker_batch_records_sum") == 13
    assert worker("streamrec_worker_batch_records_count") == worker(
        "streamrec_worker_batch_apply_duration_seconds_count") >= 1
    assert worker("streamrec_worker_produce_to_applied_seconds_count") == 11
    assert 0 <= value(worker_after, "streamrec_worker_lag_seconds") < 60
    assert value(worker_after, "streamrec_redis_used_memory_bytes") > 0
    assert value(worker_after, "streamrec_worker_decay_horizon_timestamp_seconds") == (
        operated.settings.decay_horizon[0] / 1000)

    assert service("streamrec_lists_served_total", recommender="trending") == 2
    assert service("streamrec_list_items_count", recommender="trending") == 2
    assert service("streamrec_list_items_sum", recommender="trending") == 6
    assert service("streamrec_impressions_published_total") == 2
    assert service("streamrec_redis_errors_total") == 0
    assert service("streamrec_kafka_errors_total") == 0
    requests = {(route, method, status): service(
        "streamrec_http_request_duration_seconds_count", route=route, method=method,
        status=status) for route, method, status in [
            ("/v1/trending", "GET", "200"), ("/v1/events", "POST", "202"),
            ("/v1/users/{user_id}/recommendations", "GET", "401"),
            ("unmatched", "GET", "404")]}
    assert requests == {("/v1/trending", "GET", "200"): 2, ("/v1/events", "POST", "202"): 1,
                        ("/v1/users/{user_id}/recommendations", "GET", "401"): 1,
                        ("unmatched", "GET", "404"): 1}
    assert ("streamrec_http_request_duration_seconds_bucket", (
        ("le", "0.01"), ("method", "GET"), ("route", "/v1/trending"), ("status", "200"))
            ) in service_after
    assert not any(user in name or user in str(labels) or viewer in str(labels)
                   for name, labels in {**worker_after, **service_after})


def test_request_ids_and_json_log_lines(operated: Operated) -> None:
    given = operated.http.get(f"{operated.base}/healthz", headers={"X-Request-ID": "trace-4.2:a"})
    assert given.headers["x-request-id"] == "trace-4.2:a"
    for refused in ("has spaces", "x" * 65, "ünicode"):
        replaced = operated.http.get(f"{operated.base}/healthz",
                                     headers={"X-Request-ID": refused.encode()})
        assert re.fullmatch(r"[0-9a-f]{32}", replaced.headers["x-request-id"])
    first, second = (operated.http.get(f"{operated.base}/healthz").headers["x-request-id"]
                     for _ in range(2))
    assert first != second and re.fullmatch(r"[0-9a-f]{32}", first)
    refused = httpx.get(f"{operated.base}/v1/trending", headers={"X-Request-ID": "no-key-1"})
    assert (refused.status_code, refused.headers["x-request-id"]) == (401, "no-key-1")
    served = operated.http.get(f"{operated.base}/v1/trending", headers={"X-Request-ID": "list-1"})
    list_id = served.json()["recommendation_id"]

    def logged() -> list[dict] | None:
        lines = [json.loads(line) for line in operated.service_log() if line.strip()]
        return lines if any(line.get("request_id") == "list-1" for line in lines) else None

    lines = wait_for(logged, "the access line of the served list", 10)
    assert all({"time", "level", "logger", "message"} <= set(line) for line in lines)
    by_request = {line.get("request_id"): line for line in lines if line["logger"] ==
                  "uvicorn.access"}
    assert "GET /healthz" in by_request["trace-4.2:a"]["message"]
    assert " 401" in by_request["no-key-1"]["message"]
    assert by_request["list-1"]["recommendation_id"] == list_id
    worker_log = (operated.children.logs / "worker.log").read_text().splitlines()
    assert worker_log and all(json.loads(line)["level"] for line in worker_log if line.strip())


def test_monitoring_names_only_metrics_that_exist(operated: Operated) -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    assert {"prometheus", "grafana", "service", "worker"} <= set(services)
    worker_port = services["worker"]["environment"]["STREAMREC_WORKER_METRICS_PORT"]
    prometheus_dir = ROOT / "deploy" / "prometheus"
    config = yaml.safe_load((prometheus_dir / "prometheus.yml").read_text())
    targets = {job["job_name"]: job["static_configs"][0]["targets"]
               for job in config["scrape_configs"]}
    assert targets == {"streamrec-service": ["service:8000"],
                       "streamrec-worker": [f"worker:{worker_port}"]}
    for volume in services["prometheus"]["volumes"] + services["grafana"]["volumes"]:
        assert (ROOT / volume.split(":")[0]).exists(), volume
    for rules in config["rule_files"]:
        yaml.safe_load((prometheus_dir / rules).read_text())
    dashboard = json.loads((ROOT / "deploy/grafana/dashboards/streamrec.json").read_text())
    expressions = [target["expr"] for panel in dashboard["panels"]
                   for target in panel.get("targets", [])]
    assert len(expressions) >= 15

    named = set(re.findall(r"streamrec_[a-z_]+", " ".join(expressions) + (
        prometheus_dir / "alerts.yml").read_text()))
    exposed = exposed_names(operated.worker_metrics) | exposed_names(f"{operated.base}/metrics")
    assert named and named <= exposed, named - exposed
    documented = set(re.findall(r"^\| `(streamrec_[a-z_]+)` \|", (ROOT / "README.md").read_text(),
                                re.M))
    assert documented == {name for name in exposed if name.startswith("streamrec_")
                          and not re.search(r"_(bucket|sum|count|created)$", name)
                          and f"{name}_total" not in exposed}


def exposed_names(url: str) -> set[str]:
    """Every series name `url` exposes, also of metrics with labels but no series yet."""
    names = set()
    for family in text_string_to_metric_families(httpx.get(url, timeout=10).text):
        names |= {family.name, *(sample.name for sample in family.samples)}
        if family.type == "counter":
            names.add(f"{family.name}_total")
    return names


def test_two_service_processes_report_one_total(operated: Operated, tmp_path: Path) -> None:
    settings = operated.settings.model_copy(update={"http_processes": 2, "log_format": "text",
                                                    "auth": "disabled"})
    shared = tmp_path / "metrics"
    shared.mkdir()
    _, base = operated.children.start_service(settings,
                                              {"PROMETHEUS_MULTIPROC_DIR": str(shared)})

    def processes_that_answered() -> set[str]:
        return {path.stem.rsplit("_", 1)[1] for path in shared.glob("histogram_*.db")}

    sent = 0
    while len(processes_that_answered()) < 2 and sent < 400:
        with httpx.Client() as fresh_connection:  # the kernel picks a process per connection
            response = fresh_connection.get(f"{base}/openapi.json",
                                             headers={"X-Request-ID": f"two-{sent}"})
            assert response.status_code == 200
        sent += 1
    assert len(processes_that_answered()) == 2, f"one process took all {sent} connections"
    totals = {value(scrape(f"{base}/metrics"), "streamrec_http_request_duration_seconds_count",
                    route="/openapi.json", method="GET", status="200") for _ in range(10)}
    assert totals == {sent}
    port = base.rsplit(":", 1)[1]
    text_log = (operated.children.logs / f"service-{port}.log").read_text()
    assert '"GET /openapi.json HTTP/1.1" 200 OK request_id=two-0' in text_log
