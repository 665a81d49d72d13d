"""The worker and the service as real child processes, the way production runs them."""

import os
import re
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from streamrec.contract import Settings
from streamrec.servers import (
    child_environment,
    free_port,
    start_child,
    stop_child,
    wait_until_healthy,
)

T = TypeVar("T")


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

    def start(self, command: str, name: str, settings: Settings | None = None,
              environment: dict[str, str] | None = None) -> subprocess.Popen:
        env = {**child_environment(settings or self.settings), **(environment or {})}
        process = start_child([sys.executable, "-m", "streamrec", command],
                              self.logs / f"{name}.log", env)
        self.processes.append(process)
        return process

    def start_worker(self, name: str = "worker") -> subprocess.Popen:
        return self.start("worker", name)

    def start_service(self, settings: Settings | None = None,
                      environment: dict[str, str] | None = None
                      ) -> tuple[subprocess.Popen, str]:
        settings = (settings or self.settings).model_copy(update={"http_port": free_port()})
        process = self.start("serve", f"service-{settings.http_port}", settings, environment)
        base = f"http://127.0.0.1:{settings.http_port}"
        wait_until_healthy(base, process)
        return process, base

    def stop_all(self) -> None:
        for process in reversed(self.processes):
            stop_child(process)


def children_of(pid: int) -> set[int]:
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.add(int(entry.name))
    return found


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    return state != "Z"


def printed_keys(text: str) -> dict[str, str]:
    """name -> key, for the API keys `streamrec up` or the demo printed."""
    return dict(re.findall(r"^  (app|admin) +\([a-z, ]+\): (sr_\S+)$", text, re.M))
