"""A hostile client cannot take the service from others: bodies are bounded in size and in
time on every endpoint, the work in flight is bounded, and every refusal has the one error
shape. Against a real service process (no worker needed)."""

import contextlib
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from streamrec.contract import create_key
from tests.support.processes import ChildProcesses
from tests.support.servers import Servers

BODY_TIMEOUT = 1.0
CAPACITY, SHARE = 2, 1
#: name -> key of the callers below; "a" is the default one.
KEYS: dict[str, str] = {}
LOGS: list[Path] = []


@pytest.fixture(scope="module")
def base(servers: Servers, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    logs = tmp_path_factory.mktemp("guards")
    LOGS.append(logs)
    KEYS.update({name: create_key(logs / "keys.json", name, ["read", "write"])
                 for name in ("a", "b", "c")})
    settings = servers.settings(body_timeout_seconds=BODY_TIMEOUT,
                                header_timeout_seconds=BODY_TIMEOUT, max_inflight_cost=CAPACITY,
                                over_limit_delay_seconds=BODY_TIMEOUT / 5,
                                max_inflight_cost_per_caller=SHARE, auth="required",
                                api_keys_file=logs / "keys.json")
    children = ChildProcesses(settings, logs)
    try:
        yield children.start_service()[1]
    finally:
        children.stop_all()


def as_caller(name: str = "a") -> dict[str, str]:
    return {"Authorization": f"Bearer {KEYS[name]}"}


def stalled_body(base: str, path: str, caller: str = "a", declared: int = 100) -> socket.socket:
    """A request whose body starts and then stops arriving."""
    url = urlsplit(base)
    sock = socket.create_connection((url.hostname, url.port))
    sock.sendall(f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                 f"Authorization: Bearer {KEYS[caller]}\r\n"
                 f"Content-Length: {declared}\r\n\r\n{{\"items\"".encode())
    return sock


def answer(sock: socket.socket) -> tuple[int, bytes]:
    sock.settimeout(10)
    reply = b""
    while b"\r\n\r\n" not in reply or not reply.rstrip().endswith(b"}"):
        chunk = sock.recv(65536)
        if not chunk:
            break
        reply += chunk
    return int(reply.split(b" ", 2)[1]), reply


@pytest.mark.parametrize(("method", "path", "size"), [
    ("POST", "/v1/sessions/recommendations", 5 * 1024 * 1024),
    ("PUT", "/v1/users/u/preferences", 1024 * 1024),
    ("POST", "/v1/events", 5 * 1024 * 1024),
])
def test_every_endpoint_refuses_a_body_over_its_limit_and_the_client_reads_it(
        base: str, method: str, path: str, size: int) -> None:
    for _ in range(3):  # a reset while still sending would raise here
        response = httpx.request(method, f"{base}{path}", content=b"[" + b" " * size + b"]",
                                 headers={"content-type": "application/json", **as_caller()},
                                 timeout=10)
        assert response.status_code == 413
        assert set(response.json()) == {"error", "details"}


def test_a_body_sent_without_its_length_is_cut_at_the_limit(base: str) -> None:
    def chunks() -> Iterator[bytes]:
        yield b"["
        for _ in range(200):
            yield b" " * 65536

    response = httpx.post(f"{base}/v1/sessions/recommendations", content=chunks(),
                          headers={"content-type": "application/json", **as_caller()},
                          timeout=10)
    assert response.status_code == 413
    assert response.json()["error"] == "request body exceeds the limit of 65536 bytes"


def test_a_stalled_body_times_out_with_408(base: str) -> None:
    sock = stalled_body(base, "/v1/sessions/recommendations")
    with sock:
        status, reply = answer(sock)
    assert status == 408
    assert b'"error":"the body took longer than 1s"' in reply


def test_a_body_dripped_a_byte_at_a_time_times_out_too(base: str) -> None:
    with stalled_body(base, "/v1/sessions/recommendations", declared=1000) as sock:
        started = time.monotonic()
        with contextlib.suppress(OSError):
            while time.monotonic() - started < BODY_TIMEOUT * 3:
                sock.sendall(b" ")
                time.sleep(BODY_TIMEOUT / 4)
        status, _ = answer(sock)
    assert status == 408


def test_headers_dripped_a_byte_at_a_time_time_out_even_on_a_kept_alive_connection(
        base: str) -> None:
    url = urlsplit(base)
    with socket.create_connection((url.hostname, url.port)) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        assert answer(sock)[0] == 200  # the deadline starts again after a response
        started = time.monotonic()
        with contextlib.suppress(OSError):
            for byte in b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"y" * 100:
                sock.sendall(bytes([byte]))
                time.sleep(BODY_TIMEOUT / 4)
        status, reply = answer(sock)
    assert status == 408
    assert b'"error":"the request headers took longer than 1s"' in reply
    assert time.monotonic() - started < BODY_TIMEOUT * 3
    assert httpx.get(f"{base}/healthz").status_code == 200


def test_a_body_that_is_not_json_is_415(base: str) -> None:
    response = httpx.post(f"{base}/v1/events", data={"user_id": "u"},  # a browser form
                          headers=as_caller())
    assert response.status_code == 415
    assert response.json() == {"error": "send the body as application/json", "details": []}


def test_unknown_paths_and_methods_answer_in_the_one_error_shape(base: str) -> None:
    missing = httpx.get(f"{base}/v1/nothing", headers=as_caller())
    assert (missing.status_code, missing.json()) == (404, {"error": "Not Found", "details": []})
    wrong = httpx.delete(f"{base}/v1/trending", headers=as_caller())
    assert (wrong.status_code, set(wrong.json())) == (405, {"error", "details"})
    slash = httpx.get(f"{base}/v1/users/a%2Fb/recommendations", headers=as_caller())
    assert slash.status_code in (404, 422) and set(slash.json()) == {"error", "details"}


def test_each_caller_holds_at_most_its_share_and_all_at_most_the_capacity(base: str
                                                                         ) -> None:
    held = [stalled_body(base, "/v1/events", caller) for caller in "ab"]
    try:
        time.sleep(0.2)  # both are admitted and waiting for their bodies
        own_share = httpx.get(f"{base}/v1/trending", headers=as_caller("a"), timeout=5)
        assert own_share.status_code == 429
        assert own_share.json()["error"].startswith("too much work in flight for this caller")
        overloaded = httpx.get(f"{base}/v1/trending", headers=as_caller("c"), timeout=5)
        assert overloaded.status_code == 503
        assert overloaded.headers["retry-after"] == "1"
        assert overloaded.json()["error"].startswith("overloaded")
        assert httpx.get(f"{base}/v1/trending").status_code == 401  # no key: no work at all
        assert httpx.get(f"{base}/healthz").status_code == 200  # health is never refused
    finally:
        for sock in held:
            sock.close()
    time.sleep(BODY_TIMEOUT + 0.5)
    assert httpx.get(f"{base}/v1/trending", headers=as_caller("c")).status_code == 200


def test_a_session_body_is_read_before_it_holds_any_work(base: str) -> None:
    """A session list's n is in its body, so the gate reads the body (bounded by size and
    time) before costing it: a stalled one holds no share of the work meanwhile."""
    held = [stalled_body(base, "/v1/sessions/recommendations", caller) for caller in "ab"]
    try:
        time.sleep(0.2)
        assert httpx.get(f"{base}/v1/trending", headers=as_caller("a"),
                         timeout=5).status_code == 200
        assert httpx.get(f"{base}/v1/trending", headers=as_caller("c"),
                         timeout=5).status_code == 200
        assert answer(held[0])[0] == 408  # and the stalled body still times out
    finally:
        for sock in held:
            sock.close()
    KEYS["stranger"] = "sr_not-a-key"  # an unknown key's body is not read: 401 at once
    stalled = stalled_body(base, "/v1/sessions/recommendations", "stranger")
    try:
        started = time.monotonic()
        assert answer(stalled)[0] == 401
        assert time.monotonic() - started < BODY_TIMEOUT
    finally:
        stalled.close()
        del KEYS["stranger"]


def test_an_absurd_request_is_refused_for_what_it_is_not_as_overload(base: str) -> None:
    huge_n = httpx.get(f"{base}/v1/trending", params={"n": 100_000}, headers=as_caller())
    assert huge_n.status_code == 422


def test_a_client_that_leaves_mid_body_is_no_error_in_the_log(base: str,
                                                             servers: Servers) -> None:
    for path in ("/v1/events", "/v1/sessions/recommendations"):
        stalled_body(base, path, declared=1000).close()
    time.sleep(0.5)
    assert httpx.get(f"{base}/healthz").status_code == 200
    log = "".join(path.read_text() for path in LOGS[0].glob("service-*.log"))
    assert "Traceback" not in log and "ERROR" not in log, log[-2000:]
