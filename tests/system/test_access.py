"""Access control through a real service and worker: scoped keys from the keys file, 401 and
403 in the one error shape, revocation without a restart, a rate limit per key, impressions
only from callers who may write for the user, and keys never in a log."""

import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import redis

from streamrec.contract import RedisKeys, create_key, revoke_key
from streamrec.servers import child_environment
from tests.support.processes import wait_for
from tests.support.servers import Secured, Servers

RATE, BURST = 5.0, 40  # per second: small enough to reach in a test, not by the others


@pytest.fixture(scope="module")
def secured(secured_service: Callable[..., Secured]) -> Secured:
    return secured_service({
        "reader": ["read"], "writer": ["read", "write"], "cataloguer": ["catalogue"],
        "admin": ["admin"], "revoked": ["read"],
        "greedy": ["read"]},
        rate_limit_per_second=RATE, rate_limit_burst=BURST)


def test_health_is_open_and_everything_else_needs_a_key(secured: Secured) -> None:
    assert secured.call("GET", "/healthz").status_code == 200
    assert secured.call("GET", "/readyz").status_code in (200, 503)
    missing = secured.call("GET", "/v1/trending")
    assert missing.status_code == 401
    assert missing.headers["www-authenticate"] == "Bearer"
    assert missing.json()["error"].startswith("send an API key")
    secured.keys["stranger"] = "sr_not-a-key"
    assert secured.call("GET", "/v1/trending", "stranger").json() == {
        "error": "unknown API key", "details": []}


@pytest.mark.parametrize(("method", "path", "body", "allowed"), [
    ("GET", "/v1/trending", None, {"reader", "writer"}),
    ("GET", "/v1/users/u1/recommendations", None, {"reader", "writer"}),
    ("GET", "/v1/items/i1/similar", None, {"reader", "writer"}),
    ("POST", "/v1/sessions/recommendations", {"items": ["i1"]}, {"reader", "writer"}),
    ("GET", "/v1/users/u1/preferences", None, {"reader", "writer"}),
    ("PUT", "/v1/users/u1/preferences", {"categories": ["c"]}, {"writer"}),
    ("POST", "/v1/events", {"user_id": "u1", "item_id": "i1", "event_type": "view"},
     {"writer"}),
    ("POST", "/v1/items", {"item_id": "i1", "categories": ["c"]}, {"cataloguer"}),
    ("GET", "/v1/metrics", None, {"admin"}),
    ("GET", "/v1/experiments", None, {"admin"}),
])
def test_each_operation_takes_its_scope(secured: Secured, method: str, path: str,
                                        body: object, allowed: set[str]) -> None:
    for name in ("reader", "writer", "cataloguer", "admin"):
        response = secured.call(method, path, name, json=body)
        expected = 403 if name not in allowed else response.status_code
        assert (response.status_code == expected and response.status_code < 300) or (
            name not in allowed), (name, response.text)
        if name not in allowed:
            assert response.json()["error"].endswith("scope")


def test_the_key_may_come_as_x_api_key(secured: Secured) -> None:
    assert secured.call("GET", "/v1/trending", "reader", header="X-API-Key").status_code == 200


def test_a_revoked_key_stops_working_without_a_restart(secured: Secured) -> None:
    assert secured.call("GET", "/v1/trending", "revoked").status_code == 200
    assert revoke_key(secured.settings.api_keys_file, "revoked")  # type: ignore[arg-type]
    wait_for(lambda: secured.call("GET", "/v1/trending", "revoked").status_code == 401,
             "the revocation to take effect", 5, 0.2)


def test_one_key_past_its_rate_gets_429_and_a_retry_loop_gets_it_late(secured: Secured
                                                                        ) -> None:
    """A first refusal comes at once; one again within STREAMREC_OVER_LIMIT_DELAY_SECONDS
    (1 s) waits that long: a client retrying in a loop gets one answer a second per
    connection. The other keys are answered at once."""
    delay = secured.settings.over_limit_delay_seconds
    # A unit back every 2 s: the refusals below hold on a machine too busy to answer quickly.
    secured.keys["slow"] = create_key(secured.settings.api_keys_file, "slow", ["read"],
                                      rate_per_second=RATE / 10)
    wait_for(lambda: secured.call("GET", "/v1/trending", "slow").status_code == 200,
             "the new key accepted", 10)
    statuses = []
    while 429 not in statuses and len(statuses) < 2 * BURST:
        started = time.monotonic()
        refused = secured.call("GET", "/v1/trending", "slow")
        statuses.append(refused.status_code)
    assert set(statuses[:-1]) == {200} and statuses[-1] == 429
    assert time.monotonic() - started < delay
    assert int(refused.headers["retry-after"]) >= 1
    started = time.monotonic()
    assert secured.call("GET", "/v1/trending", "slow").status_code == 429
    assert time.monotonic() - started >= delay
    started = time.monotonic()
    assert secured.call("GET", "/v1/trending", "reader").status_code == 200
    assert time.monotonic() - started < delay


def test_long_lists_spend_a_keys_rate_faster(secured: Secured) -> None:
    """An n=500 personalised list costs 1 + 6 + 500/10 = 57 units, more than the 40 a key may
    burst: it goes from the full bucket, which it leaves in debt, and the key's next request,
    however light, is refused."""
    statuses = [secured.call("GET", "/v1/users/u1/recommendations", "greedy",
                             params={"n": 500}).status_code,
                secured.call("GET", "/v1/trending", "greedy").status_code]
    assert statuses == [200, 429]


def test_a_key_with_its_own_rate_is_held_to_it(secured: Secured) -> None:
    """`streamrec keys create --rate-limit`: a key bursts as many seconds of its own rate as
    the default key does of the default (here 8 s: 40 units at 5/s, 400 at 50/s)."""
    own_rate = 10 * RATE
    secured.keys["backend"] = create_key(secured.settings.api_keys_file, "backend", ["read"],
                                         rate_per_second=own_rate)
    wait_for(lambda: secured.call("GET", "/v1/trending", "backend").status_code == 200,
             "the new key accepted", 10)
    own_burst = BURST * own_rate / RATE
    started, answered = time.monotonic(), 0
    while answered < 10 * own_burst:
        if secured.call("GET", "/v1/trending", "backend").status_code == 429:
            break
        answered += 1
    seconds = time.monotonic() - started
    assert own_burst - 1 <= answered <= own_burst + own_rate * seconds + 1


def test_only_a_caller_who_may_write_records_impressions(secured: Secured) -> None:
    shown = RedisKeys(secured.settings.key_prefix).user_shown
    with redis.Redis.from_url(secured.settings.redis_url) as client:
        assert secured.call("POST", "/v1/items", "cataloguer",
                            json={"item_id": "hot", "categories": ["c"]}).status_code == 202
        assert secured.call("POST", "/v1/events", "writer", json=[
            {"user_id": f"fan{k}", "item_id": "hot", "event_type": "purchase"}
            for k in range(3)]).status_code == 202
        wait_for(lambda: secured.call("GET", "/v1/trending", "reader").json()["items"],
                 "trending", 30)
        for name, victim in (("reader", "victim"), ("writer", "owner")):
            listed = secured.call("GET", "/v1/trending", name, params={"user_id": victim})
            assert listed.json()["items"]
        wait_for(lambda: client.exists(shown("owner")), "the writer's impression", 30)
        time.sleep(0.5)
        assert not client.exists(shown("victim"))


def test_keys_never_appear_in_a_log(secured: Secured) -> None:
    for name in ("reader", "writer", "admin"):
        secured.call("GET", "/v1/trending", name)
        secured.call("GET", "/v1/trending", name, header="X-API-Key")
    logged = "".join(path.read_text(errors="replace") for path in secured.logs.glob("*.log"))
    assert "GET /v1/trending" in logged
    for key in secured.keys.values():
        assert key not in logged


def test_the_openapi_document_declares_the_schemes(secured: Secured) -> None:
    schemes = secured.call("GET", "/openapi.json").json()["components"]["securitySchemes"]
    assert {scheme["type"] for scheme in schemes.values()} == {"http", "apiKey"}


def test_the_service_refuses_to_start_without_keys(servers: Servers, tmp_path: Path) -> None:
    settings = servers.settings(auth="required")
    done = subprocess.run([sys.executable, "-m", "streamrec", "serve"], capture_output=True,
                          text=True, timeout=60, env=child_environment(settings))
    assert done.returncode != 0
    assert done.stderr.strip().splitlines()[-1].startswith(
        "streamrec serve: no API keys: set STREAMREC_API_KEYS_FILE")
