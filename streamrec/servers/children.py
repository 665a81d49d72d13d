"""Child processes that die with their parent, on free loopback ports, waited for and stopped
in order: how the launcher, the demo, the benchmarks and the tests start servers, the worker
and the service."""

import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import httpx

from streamrec.contract import Settings

PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """Runs in the child before exec: Linux sends it SIGTERM when the parent exits."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def wait_for_port(host: str, port: int, process: subprocess.Popen, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{process.args[0]} exited with code {process.returncode}")
        with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.2):
            return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listens on {host}:{port} after {timeout}s")


def start_child(args: Sequence[str], log_path: Path, env: dict[str, str] | None = None
                ) -> subprocess.Popen:
    """Start a child that dies with us and ignores our terminal's Ctrl-C (we stop it in
    order), its output in `log_path`."""
    log = log_path.open("ab")
    return subprocess.Popen(
        list(args), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        preexec_fn=_die_with_parent, env=env, start_new_session=True,
    )


def stop_child(process: subprocess.Popen, timeout: float = 10.0) -> None:
    """SIGTERM, then SIGKILL if it has not exited within `timeout` (a stuck shutdown)."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()



def child_environment(settings: Settings) -> dict[str, str]:
    """This process's environment plus the `STREAMREC_*` variables of `settings`."""
    return {**os.environ, **settings.as_environment()}


def wait_until_healthy(base_url: str, process: subprocess.Popen, timeout: float = 30.0,
                       alive: Callable[[], None] | None = None) -> None:
    """Poll `base_url`/healthz until it answers 200; fail early if `process` exits."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{process.args[-1]} exited with code {process.returncode}")
        with contextlib.suppress(httpx.TransportError):
            if httpx.get(f"{base_url}/healthz", timeout=1).status_code == 200:
                return
        time.sleep(0.05)
    raise TimeoutError(f"{base_url} not healthy after {timeout}s")
