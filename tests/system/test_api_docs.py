"""The API's documentation against the running service: the docs page renders every operation
in a real headless Chromium with the internet out of reach; every operation's documented
example succeeds with its documented status; the errors a request can provoke come as
documented, in the one error shape."""

import shutil
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from serving.app import create_app
from serving.dependencies import MAX_EXCLUDED_IDS
from serving.guards import MAX_QUERY_BYTES
from serving.openapi import ERROR_SCHEMA
from streamrec.contract.api_keys import SCOPES
from tests.support.processes import wait_for
from tests.support.servers import Secured

DOCUMENT = create_app().openapi()
OPERATIONS = [(method.upper(), path, operation) for path, methods in DOCUMENT["paths"].items()
              for method, operation in methods.items()]
ERROR_SHAPE = {"error", "details"}


@pytest.fixture(scope="module")
def service(secured_service: Callable[..., Secured]) -> Secured:
    """A key with every scope ("all"), and one per scope holding only it."""
    return secured_service({"all": list(SCOPES), **{scope: [scope] for scope in SCOPES}})


def first_example(examples: dict[str, dict[str, Any]] | None) -> Any:
    assert examples, "no example"
    return next(iter(examples.values()))["value"]


def example_request(method: str, path: str, operation: dict[str, Any]) -> dict[str, Any]:
    """The request the document's examples make: path, query and body."""
    query: list[tuple[str, Any]] = []
    for parameter in operation.get("parameters", []):
        value = first_example(parameter.get("examples"))
        if parameter["in"] == "path":
            path = path.replace(f"{{{parameter['name']}}}", str(value))
        else:
            values = value if isinstance(value, list) else [value]
            query += [(parameter["name"], v) for v in values]
    request: dict[str, Any] = {"method": method, "url": path, "params": query}
    if "requestBody" in operation:
        request["json"] = first_example(
            operation["requestBody"]["content"]["application/json"].get("examples"))
    return request


def success_status(operation: dict[str, Any]) -> int:
    return min(int(status) for status in operation["responses"] if status.startswith("2"))


def documented_errors(operation: dict[str, Any]) -> set[int]:
    return {int(status) for status in operation["responses"] if int(status) >= 400}


def call(service: Secured, key: str | None, *, method: str, url: str, **request: Any
         ) -> httpx.Response:
    headers = {**request.pop("headers", {}),
               **({"Authorization": f"Bearer {service.keys[key]}"} if key else {})}
    return httpx.request(method, f"{service.base}{url}", headers=headers, timeout=15, **request)


@pytest.mark.parametrize(("method", "path", "operation"), OPERATIONS,
                         ids=[f"{method} {path}" for method, path, _ in OPERATIONS])
def test_each_operations_example_succeeds_as_documented(
        service: Secured, method: str, path: str, operation: dict[str, Any]) -> None:
    answer = call(service, "all", **example_request(method, path, operation))
    assert answer.status_code == success_status(operation), answer.text


def test_every_error_is_documented_in_the_one_error_shape() -> None:
    for method, path, operation in OPERATIONS:
        for status in documented_errors(operation):
            content = operation["responses"][str(status)]["content"]["application/json"]
            if path == "/readyz":  # its 503 is the readiness report itself
                continue
            assert content["schema"] == {"$ref": f"#/components/schemas/{ERROR_SCHEMA}"}, (
                method, path, status)
            assert set(content["example"]) == ERROR_SHAPE, (method, path, status)
    assert set(DOCUMENT["components"]["schemas"][ERROR_SCHEMA]["properties"]) == ERROR_SHAPE
    assert "HTTPValidationError" not in DOCUMENT["components"]["schemas"]


def required_scope(operation: dict[str, Any]) -> str:
    return next(iter(operation["security"][0].values()))[0]


def provocations(path: str, operation: dict[str, Any], request: dict[str, Any],
                 limit: int) -> Iterator[tuple[int, str | None, dict[str, Any]]]:
    """(status, key, request) for each documented error a request alone can cause; 408
    (a slow body), 429 (a key's rate) and 503 (overload, Redis or Kafka down) are tested
    in test_http_guards.py, test_access.py and test_outages.py."""
    errors = documented_errors(operation)
    if 401 in errors:
        yield 401, None, request
    if 403 in errors:
        lacking = next(s for s in SCOPES if s != required_scope(operation))
        yield 403, lacking, request
    body_request = {k: v for k, v in request.items() if k != "json"}
    if 415 in errors:
        yield 415, "all", {**body_request, "content": b"user_id=u1",
                           "headers": {"content-type": "application/x-www-form-urlencoded"}}
    if 413 in errors:
        yield 413, "all", {**body_request, "content": b" " * (limit + 1),
                           "headers": {"content-type": "application/json"}}
    if 414 in errors:
        yield 414, "all", {**request, "params": [*request["params"],
                                                 ("padding", "x" * (MAX_QUERY_BYTES + 1))]}
    if 422 in errors:
        if "requestBody" in operation:
            yield 422, "all", {**request, "json": {"unexpected": True}}
        elif "{" in path:  # an id with surrounding blanks is no id
            yield 422, "all", {**request, "url": path.split("{")[0] + "%20padded%20" +
                               path.split("}")[1]}
        else:
            yield 422, "all", {**request, "params": [("n", "many")]}


@pytest.mark.parametrize(("method", "path", "operation"), OPERATIONS,
                         ids=[f"{method} {path}" for method, path, _ in OPERATIONS])
def test_the_errors_a_request_can_cause_come_as_documented(
        service: Secured, method: str, path: str, operation: dict[str, Any]) -> None:
    request = example_request(method, path, operation)
    limit = (service.settings.max_request_bytes if path in ("/v1/events", "/v1/items")
             else service.settings.max_small_request_bytes)
    provoked = set()
    for status, key, bad in provocations(path, operation, request, limit):
        answer = call(service, key, **bad)
        assert answer.status_code == status, (status, answer.text)
        assert set(answer.json()) == ERROR_SHAPE, answer.text
        provoked.add(status)
    assert provoked == documented_errors(operation) - {408, 429, 503}


def test_exclude_takes_repeated_parameters_and_comma_separated_ids(service: Secured) -> None:
    items = [f"x{k}" for k in range(6)]
    assert call(service, "all", method="POST", url="/v1/events", json=[
        {"user_id": f"fan{k}", "item_id": item, "event_type": "view"}
        for k, item in enumerate(items) for _ in range(k + 1)]).status_code == 202

    def trending(**params: Any) -> list[str] | None:
        answer = call(service, "all", method="GET", url="/v1/trending", params=params)
        listed = [item["item_id"] for item in answer.json()["items"]]
        return listed if set(items) <= set(listed) else None

    wait_for(lambda: trending(n=20), "every item trending", 30)
    answer = call(service, "all", method="GET", url="/v1/trending",
                  params=[("n", 20), ("exclude", "x0"), ("exclude", "x1,x2"),
                          ("exclude", " x3 ,")])
    assert answer.status_code == 200, answer.text
    listed = {item["item_id"] for item in answer.json()["items"]}
    assert listed & set(items) == {"x4", "x5"}
    too_many = ",".join(f"z{k}" for k in range(MAX_EXCLUDED_IDS + 1))
    answer = call(service, "all", method="GET", url="/v1/trending",
                  params=[("exclude", too_many)])
    assert answer.status_code == 422 and "at most 1000 ids" in answer.text, answer.text


def chromium_and_driver() -> tuple[str, str]:
    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if chromium is None or driver is None:
        pytest.skip("Debian's chromium and chromium-driver are not installed "
                    "(apt-get install chromium chromium-driver; .ci/run installs them)")
    return chromium, driver


def test_the_docs_page_shows_every_operation_without_internet(service: Secured) -> None:
    chromium, driver_path = chromium_and_driver()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                     "--disable-gpu",
                     # No name resolves but loopback's: a script from a CDN cannot load.
                     "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1"):
        options.add_argument(argument)
    browser = webdriver.Chrome(options=options, service=Service(driver_path))
    try:
        browser.get(f"{service.base}/docs")

        def shown() -> set[tuple[str, str]] | None:
            blocks = browser.find_elements(By.CSS_SELECTOR, ".opblock-summary")
            found = {(block.find_element(By.CSS_SELECTOR, ".opblock-summary-method").text,
                      block.find_element(By.CSS_SELECTOR, ".opblock-summary-path")
                      .get_attribute("data-path")) for block in blocks}
            return found if len(found) == len(OPERATIONS) else None

        operations = wait_for(shown, "every operation on the docs page", 30, 0.25)
        assert operations == {(method, path) for method, path, _ in OPERATIONS}
        assert browser.find_elements(By.CSS_SELECTOR, ".btn.authorize")  # takes a key
    finally:
        browser.quit()
