"""STREAMREC_METRICS=disabled (there only so the benchmark can measure what metrics cost):
requests keep their ids but are neither timed nor counted, and /metrics is not served."""

from types import SimpleNamespace

from prometheus_client import REGISTRY

from serving.app import create_app
from serving.telemetry import RequestTelemetry, record_list
from streamrec.contract import Settings

ROUTE = "/v1/test-switch"


async def serve_a_list(scope: dict, receive: object, send: object) -> None:
    route = SimpleNamespace(path=ROUTE)
    scope["route"] = route
    record_list("switch-test", "list-1", 7)
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b""})


async def one_request(telemetry: RequestTelemetry) -> list[tuple[bytes, bytes]]:
    headers: list[tuple[bytes, bytes]] = []

    async def send(message: dict) -> None:
        if message["type"] == "http.response.start":
            headers.extend(message["headers"])

    async def receive() -> dict:
        return {"type": "http.request", "body": b"", "more_body": False}

    await telemetry({"type": "http", "path": ROUTE, "method": "GET", "headers": []},
                    receive, send)
    return headers


def counted() -> tuple[float, float, float]:
    """(requests timed, lists served, items in them) of the test's route and recommender."""
    def sample(name: str, **labels: str) -> float:
        return REGISTRY.get_sample_value(name, labels) or 0.0

    return (sample("streamrec_http_request_duration_seconds_count", route=ROUTE,
                   method="GET", status="200"),
            sample("streamrec_lists_served_total", recommender="switch-test"),
            sample("streamrec_list_items_sum", recommender="switch-test"))


async def test_observed_requests_are_timed_and_their_lists_counted() -> None:
    before = counted()
    headers = await one_request(RequestTelemetry(serve_a_list))
    assert [name for name, _ in headers] == [b"x-request-id"]
    after = counted()
    assert (after[0] - before[0], after[1] - before[1], after[2] - before[2]) == (1, 1, 7)


async def test_unobserved_requests_keep_their_ids_and_count_nothing() -> None:
    before = counted()
    headers = await one_request(RequestTelemetry(serve_a_list, observe=False))
    assert [name for name, _ in headers] == [b"x-request-id"]
    assert counted() == before


def test_disabled_metrics_are_not_served() -> None:
    def paths(metrics: str) -> set[str]:
        return set(create_app(Settings(metrics=metrics)).openapi()["paths"])

    assert "/metrics" in paths("enabled")
    assert "/metrics" not in paths("disabled")
