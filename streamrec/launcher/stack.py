"""The whole system on this machine: the embedded broker and Redis, a worker and the service
as child processes, started in order and stopped without losing an event.

A graceful stop drains first: the service stops accepting (and answers what it started),
then the worker applies everything in the topics, then the worker, the broker and Redis
stop. With a data directory Redis keeps its state in an append-only file there, so `up`
from the same directory starts where it stopped. The embedded broker keeps topics in memory
only: a kill -9 of everything loses what was produced but not yet applied (milliseconds of
events on a quiet system); a real Kafka (docker-compose.yml) keeps them.
"""

import asyncio
import contextlib
import logging
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from streamrec.contract import Scope, Settings, create_key, ensure_topics, load_keys
from streamrec.servers import (
    EmbeddedServers,
    child_environment,
    embedded_servers,
    start_child,
    stop_child,
    wait_until_healthy,
)

from .drain import wait_until_drained

log = logging.getLogger(__name__)

KEYS_FILE = "api-keys.json"
#: How long a graceful stop waits for the worker to apply what is in the topics.
DRAIN_SECONDS = 60.0
#: What the embedded broker cannot do, said wherever it is started for people.
EMBEDDED_BROKER_LIMITS = (
    "the embedded broker keeps topics in memory: stop with Ctrl-C (it drains first); after "
    "a kill -9, events produced but not yet applied are lost. Its fetches slow down as "
    "stored batches grow (tens of thousands per partition), so for long runs or real "
    "traffic use a Kafka (docker-compose.yml)."
)


#: The keys `up` and the demo create when their keys file has none.
FIRST_KEYS: dict[str, list[Scope]] = {"app": ["read", "write"],
                                      "admin": ["read", "write", "catalogue", "admin"]}


@dataclass
class Stack:
    settings: Settings  # pointing at the running servers
    servers: EmbeddedServers
    logs: Path
    new_keys: dict[str, str]  # name -> key, for the keys created by this start
    children: dict[str, subprocess.Popen] = field(default_factory=dict)

    @property
    def service_url(self) -> str:
        return f"http://{self.settings.http_host}:{self.settings.http_port}"

    def start(self, name: str, *arguments: str, **environment: str) -> subprocess.Popen:
        """`streamrec ARGUMENTS` as a child process named `name`, logging to logs/name.log,
        with `environment` added to the settings' (secrets go there, not in arguments)."""
        process = start_child([sys.executable, "-m", "streamrec", *arguments],
                              self.logs / f"{name}.log",
                              {**child_environment(self.settings), **environment})
        self.children[name] = process
        return process

    def check_alive(self) -> None:
        for name, process in self.children.items():
            if process.poll() is not None:
                tail = (self.logs / f"{name}.log").read_text(errors="replace")[-2000:]
                raise RuntimeError(f"the {name} exited with code {process.returncode}:\n{tail}")

    def stop(self) -> dict[str, int]:
        """Stop accepting, drain, stop: returns what could not be applied in time."""
        for name in [n for n in self.children if n not in ("worker", "service")]:
            stop_child(self.children.pop(name))
        if "service" in self.children:
            stop_child(self.children.pop("service"))
        left: dict[str, int] = {}
        worker = self.children.pop("worker", None)
        if worker is not None:
            if worker.poll() is None:
                left = asyncio.run(wait_until_drained(self.settings, DRAIN_SECONDS))
            stop_child(worker)
        return left


@contextlib.contextmanager
def running_stack(settings: Settings, workdir: Path, *, persist: bool) -> Iterator[Stack]:
    """Broker, Redis (with `persist`: an append-only file in `workdir`), topics, a worker
    and the service, healthy; drained and stopped when the block ends. Unless the settings
    name a keys file, the keys live in `workdir` (created there on the first start)."""
    keys_file = settings.api_keys_file or workdir / KEYS_FILE
    new_keys = {} if load_keys(keys_file).keys else {
        name: create_key(keys_file, name, scopes) for name, scopes in FIRST_KEYS.items()}
    with embedded_servers(workdir, persist_redis=persist) as servers:
        live = settings.model_copy(update={
            "kafka_bootstrap_servers": servers.broker.bootstrap_servers,
            "redis_url": servers.redis.url, "api_keys_file": keys_file})
        asyncio.run(ensure_topics(live))
        stack = Stack(live, servers, workdir, new_keys)
        try:
            stack.start("worker", "worker")
            wait_until_healthy(stack.service_url, stack.start("service", "serve"), 60)
            yield stack
        finally:
            left = stack.stop()
            if left:
                log.warning("stopped before the worker applied %d records: %s",
                            sum(left.values()), left)
