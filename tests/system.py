"""The worker and the service as real child processes, the way production runs them."""

import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import httpx

from streamrec.contract import Settings
from streamrec.embedded import free_port, start_child, stop_child

T = TypeVar("T")


def settings_environment(settings: Settings) -> dict[str, str]:
    return {**os.environ, **settings.as_environment()}


def wait_for(probe: Callable[[], T | None], what: str, timeout: float = 30.0,
             interval: float = 0.05) -> T:
    """Poll until `probe` returns something truthy; fail with `what` after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        result = probe()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


@dataclass
class ChildProcesses:
    settings: Settings
    logs: Path
    processes: list[subprocess.Popen] = field(default_factory=list)

    def start(self, command: str, name: str, settings: Settings | None = None
              ) -> subprocess.Popen:
        env = settings_environment(settings or self.settings)
        process = start_child([sys.executable, "-m", "streamrec", command],
                              self.logs / f"{name}.log", env)
        self.processes.append(process)
        return process

    def start_worker(self, name: str = "worker") -> subprocess.Popen:
        return self.start("worker", name)

    def start_service(self, settings: Settings | None = None) -> tuple[subprocess.Popen, str]:
        settings = (settings or self.settings).model_copy(update={"http_port": free_port()})
        process = self.start("serve", f"service-{settings.http_port}", settings)
        base = f"http://127.0.0.1:{settings.http_port}"

        def up() -> bool:
            try:
                return httpx.get(f"{base}/healthz", timeout=1).status_code == 200
            except httpx.TransportError:
                assert process.poll() is None, f"service exited: see {self.logs}"
                return False

        wait_for(up, "the service to listen")
        return process, base

    def stop_all(self) -> None:
        for process in reversed(self.processes):
            stop_child(process)
