"""A hostile client cannot take the service from others: bodies are bounded in size and in
time on every endpoint, the work in flight is bounded, and every refusal has the one error
shape. Against a real service process (no worker needed)."""

import socket
import time
from collections.abc import Iterator
from urllib.parse import urlsplit

import httpx
import pytest

from tests.support.processes import ChildProcesses
from tests.support.servers import Servers

BODY_TIMEOUT = 1.0
CAPACITY = 2


@pytest.fixture(scope="module")
def base(servers: Servers, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    settings = servers.settings(body_timeout_seconds=BODY_TIMEOUT, max_inflight_cost=CAPACITY)
    children = ChildProcesses(settings, tmp_path_factory.mktemp("guards"))
    try:
        yield children.start_service()[1]
    finally:
        children.stop_all()


def stalled_body(base: str, path: str, declared: int = 100) -> socket.socket:
    """A request whose body starts and then stops arriving."""
    url = urlsplit(base)
    sock = socket.create_connection((url.hostname, url.port))
    sock.sendall(f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
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
                                 headers={"content-type": "application/json"}, timeout=10)
        assert response.status_code == 413
        assert set(response.json()) == {"error", "details"}


def test_a_body_sent_without_its_length_is_cut_at_the_limit(base: str) -> None:
    def chunks() -> Iterator[bytes]:
        yield b"["
        for _ in range(200):
            yield b" " * 65536

    response = httpx.post(f"{base}/v1/sessions/recommendations", content=chunks(),
                          headers={"content-type": "application/json"}, timeout=10)
    assert response.status_code == 413
    assert response.json()["error"] == "request body exceeds the limit of 65536 bytes"


def test_a_stalled_body_times_out_with_408(base: str) -> None:
    sock = stalled_body(base, "/v1/sessions/recommendations")
    with sock:
        status, reply = answer(sock)
    assert status == 408
    assert b'"error":"the body stalled for 1s"' in reply


def test_a_body_that_is_not_json_is_415(base: str) -> None:
    response = httpx.post(f"{base}/v1/events", data={"user_id": "u"})  # a browser form
    assert response.status_code == 415
    assert response.json() == {"error": "send the body as application/json", "details": []}


def test_unknown_paths_and_methods_answer_in_the_one_error_shape(base: str) -> None:
    missing = httpx.get(f"{base}/v1/nothing")
    assert (missing.status_code, missing.json()) == (404, {"error": "Not Found", "details": []})
    wrong = httpx.delete(f"{base}/v1/trending")
    assert (wrong.status_code, set(wrong.json())) == (405, {"error", "details"})
    slash = httpx.get(f"{base}/v1/users/a%2Fb/recommendations")
    assert slash.status_code in (404, 422) and set(slash.json()) == {"error", "details"}


def test_work_in_flight_is_bounded_and_the_excess_refused_at_once(base: str) -> None:
    held = [stalled_body(base, "/v1/sessions/recommendations") for _ in range(CAPACITY)]
    try:
        time.sleep(0.2)  # both are admitted and waiting for their bodies
        refused = httpx.get(f"{base}/v1/trending", timeout=5)
        assert refused.status_code == 503
        assert refused.headers["retry-after"] == "1"
        assert refused.json()["error"].startswith("overloaded")
        assert httpx.get(f"{base}/healthz").status_code == 200  # health is never refused
    finally:
        for sock in held:
            sock.close()
    time.sleep(BODY_TIMEOUT + 0.5)
    assert httpx.get(f"{base}/v1/trending").status_code == 200
