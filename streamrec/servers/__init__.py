"""Real servers and child processes on this machine: the embedded broker and Redis, the
worker and the service as children that die with their parent."""

from .children import (
    child_environment,
    free_port,
    start_child,
    stop_child,
    wait_for_port,
    wait_until_healthy,
)
from .embedded import EmbeddedServers, KafkaBroker, RedisServer, embedded_servers

__all__ = [
    "EmbeddedServers",
    "KafkaBroker",
    "RedisServer",
    "child_environment",
    "embedded_servers",
    "free_port",
    "start_child",
    "stop_child",
    "wait_for_port",
    "wait_until_healthy",
]
