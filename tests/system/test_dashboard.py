"""The /dashboard page in a real headless Chromium (Debian's chromium and chromium-driver,
driven by Selenium) against a real worker and service with synthetic shoppers: its charts
fill, and every number it shows is the one the API gives."""

import asyncio
import math
import shutil
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from streamrec.contract import Settings, create_key, ensure_topics, produce_records
from streamrec.datasets import make_world
from streamrec.launcher.traffic import produce_traffic
from streamrec.servers import stop_child
from tests.support.processes import ChildProcesses, wait_for
from tests.support.servers import Servers

CHROMIUM, CHROMEDRIVER = shutil.which("chromium"), shutil.which("chromedriver")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None or CHROMEDRIVER is None,
    reason="needs Debian's chromium and chromium-driver (apt-get install chromium "
    "chromium-driver)")

SHOPPERS = 40
#: Everything the page shows, read in one go (the page cannot refresh in between).
READ_PAGE = """
const text = (id) => document.getElementById(id).textContent;
const rows = (id) => [...document.getElementById(id).rows].map(
    (row) => [...row.cells].map((cell) => cell.textContent));
const points = (id) => [...document.querySelectorAll(`#${id} polyline`)].reduce(
    (sum, line) => sum + line.getAttribute("points").split(" ").length, 0);
return {
  at_ms: Number(document.getElementById("sampled-at").dataset.atMs || 0),
  tiles: Object.fromEntries(["events-per-second", "events-applied", "dead-letters-per-second",
      "dead-lettered", "lag-seconds", "lists-per-second", "lists-served", "p50-ms", "p99-ms"]
      .map((id) => [id, text(id)])),
  chart_points: Object.fromEntries(["chart-events", "chart-dead-letters", "chart-lag",
      "chart-lists", "chart-latency", "chart-ctr"].map((id) => [id, points(id)])),
  ctr: rows("ctr-table"), trending: rows("trending"), dead_letters: rows("dead-letters"),
  profile: Object.fromEntries(rows("profile")), recommendations: rows("user-recommendations"),
  resources: performance.getEntriesByType("resource").map((entry) => entry.name),
};
"""


@dataclass
class Running:
    settings: Settings
    children: ChildProcesses
    base: str
    admin: httpx.Client
    reader: httpx.Client  # read scope only: its lists publish no impression
    shopper_key: str

    def series(self) -> dict[str, Any]:
        response = self.admin.get(f"{self.base}/v1/dashboard/series")
        assert response.status_code == 200, response.text
        return response.json()


@pytest.fixture(scope="module")
def running(servers: Servers, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    logs = tmp_path_factory.mktemp("dashboard")
    keys_file = logs / "keys.json"
    admin_key = create_key(keys_file, "operator", ["read", "write", "admin"])
    reader_key = create_key(keys_file, "reader", ["read"])
    shopper_key = create_key(keys_file, "shop", ["read", "write"])
    settings = servers.settings(auth="required", api_keys_file=keys_file,
                                dashboard_sample_seconds=1.0)
    asyncio.run(ensure_topics(settings))
    children = ChildProcesses(settings, logs)
    try:
        children.start_worker()
        _, base = children.start_service()
        with httpx.Client(timeout=10, headers={"Authorization": f"Bearer {admin_key}"}) as admin, \
                httpx.Client(timeout=10, headers={"Authorization": f"Bearer {reader_key}"}
                             ) as reader:
            yield Running(settings, children, base, admin, reader, shopper_key)
    finally:
        children.stop_all()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                     "--window-size=1400,1800"):
        options.add_argument(argument)
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    try:
        yield driver
    finally:
        driver.quit()


def shown_number(text: str) -> float | None:
    return None if text == "–" else float(text.rstrip("%"))


def assert_shown(text: str, value: float | None, digits: int = 1) -> None:
    """The page shows `value` to `digits` decimals ("–" when unknown)."""
    shown = shown_number(text)
    if value is None:
        assert shown is None, text
    else:
        assert shown is not None and math.isclose(shown, value, abs_tol=0.5 * 10**-digits
                                                  + 1e-9), (text, value)


def look_up(browser: Any, user: str) -> dict[str, Any]:
    """Look `user` up on the page; the page once it shows their recommendations."""
    from selenium.webdriver.common.by import By

    browser.execute_script('document.getElementById("user-recommendations").replaceChildren()')
    field = browser.find_element(By.ID, "user-id")
    field.clear()
    field.send_keys(user)
    field.submit()
    return wait_for(lambda: (page := browser.execute_script(READ_PAGE))["recommendations"]
                    and page, "the user's recommendations", 30, interval=0.3)


def lists_served(base: str) -> int:
    families = text_string_to_metric_families(httpx.get(f"{base}/metrics", timeout=10).text)
    return int(sum(sample.value for family in families for sample in family.samples
                   if sample.name == "streamrec_lists_served_total"))


def shop(running: Running, seconds: float) -> threading.Thread:
    """Synthetic shoppers for `seconds`: events through Kafka, and browsing the service's
    lists, clicking what is to their taste."""
    rate = 80.0
    thread = threading.Thread(target=lambda: asyncio.run(produce_traffic(
        running.settings, rate, SHOPPERS, count=int(rate * seconds), service=running.base,
        browse_rate=8.0, api_key=running.shopper_key)))
    thread.start()
    return thread


def quiet_metrics(running: Running) -> dict[str, Any]:
    """/v1/metrics once the worker has applied everything (unchanged over 3 s)."""
    seen: list[dict[str, Any]] = []

    def unchanged() -> dict[str, Any] | None:
        seen.append(running.admin.get(f"{running.base}/v1/metrics").json())
        return seen[-1] if len(seen) >= 3 and seen[-1] == seen[-3] else None

    return wait_for(unchanged, "the worker to apply everything", 60, interval=1.5)


def test_the_page_is_open_and_its_data_needs_the_admin_scope(running: Running) -> None:
    page = httpx.get(f"{running.base}/dashboard")
    assert page.status_code == 200 and "<svg" in page.text
    assert httpx.get(f"{running.base}/v1/dashboard/series").status_code == 401
    assert running.reader.get(f"{running.base}/v1/dashboard/series").status_code == 403
    assert running.reader.get(
        f"{running.base}/v1/dashboard/users/someone/recommendations").status_code == 403


def test_the_page_shows_what_the_api_says(running: Running, browser: Any,
                                          tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By

    settings = running.settings
    traffic = shop(running, seconds=15)
    bad = [b"{not json", b'{"event_id": "e1", "user_id": "u", "item_id": "i", '
           b'"event_type": "like", "timestamp": 1764000000000}']
    asyncio.run(produce_records(settings, settings.events_topic,
                                [(b"u", record) for record in bad]))

    browser.get(f"{running.base}/dashboard")
    key_field = browser.find_element(By.ID, "admin-key")
    assert key_field.is_displayed()
    key_field.send_keys(running.admin.headers["Authorization"].removeprefix("Bearer "))
    key_field.submit()

    # Live: the charts fill while the shoppers shop, each tile as the API has it.
    def charts_filling() -> dict[str, Any] | None:
        page = browser.execute_script(READ_PAGE)
        filled = min(page["chart_points"][chart] for chart in (
            "chart-events", "chart-lag", "chart-lists", "chart-latency", "chart-ctr"))
        busy = ((shown_number(page["tiles"]["events-per-second"]) or 0) > 20
                and page["tiles"]["p50-ms"] != "–")
        return page if filled >= 3 and busy else None

    page = wait_for(charts_filling, "the charts to fill with traffic", 60, interval=0.5)
    [point] = [p for p in running.series()["points"] if p["at_ms"] == page["at_ms"]]
    for tile, field in (("events-per-second", "events_per_second"),
                        ("dead-letters-per-second", "dead_letters_per_second"),
                        ("lag-seconds", "lag_seconds"), ("lists-per-second", "lists_per_second"),
                        ("p50-ms", "p50_ms"), ("p99-ms", "p99_ms")):
        assert_shown(page["tiles"][tile], point[field])
    assert point["lists_per_second"] > 0 and point["p99_ms"] >= point["p50_ms"] > 0

    # The screenshot (docs/dashboard.png): busy, with a user looked up.
    user = make_world(users=SHOPPERS).users[0]
    look_up(browser, user)
    browser.execute_script("window.scrollTo(0, 0)")
    screenshot = tmp_path / "dashboard.png"
    assert browser.save_screenshot(str(screenshot)) and screenshot.stat().st_size > 20_000
    print(f"screenshot: {screenshot}")

    # Quiet: the totals, CTR, lag, dead letters and trending items equal the other endpoints'.
    traffic.join(timeout=60)
    metrics = quiet_metrics(running)
    quiet_since_ms, served = time.time() * 1000, lists_served(running.base)
    page = wait_for(lambda: (p := browser.execute_script(READ_PAGE))["at_ms"] > quiet_since_ms
                    and p, "a sample taken after the traffic", 30, interval=0.5)
    counters = metrics["counters"]
    assert page["tiles"]["events-applied"] == str(counters["events_applied"])
    assert page["tiles"]["dead-lettered"] == str(counters["dead_lettered"])
    assert counters["dead_lettered"] >= len(bad)
    assert page["tiles"]["lists-served"] == str(served)
    assert page["tiles"]["events-per-second"] == "0.0"
    assert [row[:3] for row in page["ctr"]] == [
        [name, str(r["events"]["items_shown"]), str(r["events"].get("click", 0))]
        for name, r in sorted(metrics["recommenders"].items())]
    for row in page["ctr"]:
        assert_shown(row[3], 100 * metrics["recommenders"][row[0]]["ctr"], digits=2)
    assert {"personalised", "trending"} <= {row[0] for row in page["ctr"]}
    trending = running.reader.get(f"{running.base}/v1/trending", params={"n": 10}).json()
    assert [row[1] for row in page["trending"]] == [i["item_id"] for i in trending["items"]]
    newest_event_s = trending["freshness"]["event_time_ms"] / 1000
    assert_shown(page["tiles"]["lag-seconds"], page["at_ms"] / 1000 - newest_event_s)
    dead_letters = running.series()["dead_letters"]
    assert [row[3] for row in page["dead_letters"]] == [d["reason"] for d in dead_letters]
    assert any("unknown event_type 'like'" in row[3] for row in page["dead_letters"])

    # The user lookup: the profile and the list the user would be shown now.
    page = look_up(browser, user)
    profile = running.admin.get(f"{running.base}/v1/users/{user}/profile").json()
    assert page["profile"]["user"] == user
    assert page["profile"]["events by type"] == ", ".join(
        f"{kind} {count}" for kind, count in profile["events_by_type"].items())
    assert page["profile"]["recent items"] == ", ".join(
        f"{r['event_type']} {r['item_id']}" for r in profile["recent"][:10])
    listed = running.reader.get(f"{running.base}/v1/users/{user}/recommendations",
                                params={"n": 10}).json()
    assert [(row[0], row[1], row[3]) for row in page["recommendations"]] == [
        (i["item_id"], i["source"], i["reason"]) for i in listed["items"]]
    assert any(row[3].startswith("because you") for row in page["recommendations"])

    # Nothing came from anywhere but the service (no CDN: it works offline).
    assert page["resources"] and all(name.startswith(running.base)
                                     for name in page["resources"])



def test_the_series_survive_a_service_restart(running: Running) -> None:
    wait_for(lambda: len(running.series()["points"]) >= 2, "two samples", 30, interval=0.5)
    before = [p["at_ms"] for p in running.series()["points"]]
    stop_child(running.children.processes.pop())  # the service
    _, running.base = running.children.start_service()
    after = wait_for(lambda: (points := [p["at_ms"] for p in running.series()["points"]])
                     [-1] > before[-1] and points, "a sample by the new service", 30, 0.5)
    assert set(before) <= set(after)
