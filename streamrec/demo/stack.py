"""The one-command demo: embedded broker and Redis, a worker, the service and synthetic
traffic as child processes, until Ctrl-C stops them all."""

import asyncio
import json
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from streamrec.contract import Settings, ensure_topics
from streamrec.datasets import make_world
from streamrec.servers import child_environment, embedded_servers, start_child, stop_child

console = Console()


def get_json(url: str, timeout: float = 2.0) -> tuple[int, Any]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"null")
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return 0, None


def wait_until(check: Any, what: str, children: dict[str, subprocess.Popen], logs: Path,
               timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ensure_alive(children, logs)
        if check():
            return
        time.sleep(0.25)
    raise TimeoutError(f"{what} not ready after {timeout:.0f}s; logs in {logs}")


def ensure_alive(children: dict[str, subprocess.Popen], logs: Path) -> None:
    for name, process in children.items():
        if process.poll() is not None:
            tail = (logs / f"{name}.log").read_text(errors="replace")[-2000:]
            raise RuntimeError(f"the {name} exited with code {process.returncode}:\n{tail}")


def personalised(base: str, user: str) -> dict[str, Any] | None:
    """The user's list if co-occurrence already shapes it."""
    status, body = get_json(f"{base}/v1/users/{user}/recommendations?n=5")
    if status == 200 and any(item["source"] == "co-occurrence" for item in body["items"]):
        return body
    return None


def show_samples(base: str, users: int, shown: int = 3) -> None:
    world = make_world(users=users)
    samples = ((user, personalised(base, user)) for user in world.users)
    for user, body in [(u, b) for u, b in samples if b is not None][:shown]:
        table = Table(title=f"{user} (hidden taste: {world.favourite_category[user]})",
                      title_justify="left")
        for column in ("item", "score", "source", "reason"):
            table.add_column(column)
        for item in body["items"]:
            table.add_row(item["item_id"], f"{item['score']:.3g}", item["source"], item["reason"])
        console.print(table)
        ago = body["freshness"]["applied_ms_ago"]
        console.print(f"  their last event was applied {ago} ms ago")


def run_demo(settings: Settings, rate: float, users: int) -> None:
    started = time.monotonic()
    # Ctrl-C and SIGTERM stop everything, even where SIGINT was inherited as ignored (shells
    # start background jobs that way, and Python keeps an inherited "ignore").
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    logs = Path("runs") / time.strftime("demo-%Y%m%d-%H%M%S")
    logs.mkdir(parents=True, exist_ok=True)
    with embedded_servers(logs) as servers:
        live = settings.model_copy(update={
            "kafka_bootstrap_servers": servers.broker.bootstrap_servers,
            "redis_url": servers.redis.url})
        env = child_environment(live)
        asyncio.run(ensure_topics(live))
        command = [sys.executable, "-m", "streamrec"]
        base = f"http://{settings.http_host}:{settings.http_port}"
        children: dict[str, subprocess.Popen] = {}
        try:
            children["worker"] = start_child([*command, "worker"], logs / "worker.log", env)
            children["service"] = start_child([*command, "serve"], logs / "service.log", env)
            children["traffic"] = start_child(
                [*command, "traffic", "--rate", str(rate), "--users", str(users),
                 "--service", base],
                logs / "traffic.log", env)
            console.print(f"broker {servers.broker.bootstrap_servers}, redis {servers.redis.url}, "
                          f"logs in {logs}/")
            wait_until(lambda: get_json(f"{base}/readyz")[0] == 200, "the service", children, logs)
            sample_users = make_world(users=users).users[:20]
            wait_until(lambda: any(personalised(base, u) for u in sample_users),
                       "personalised recommendations", children, logs)
            ready_in = time.monotonic() - started
            console.print(f"\n[bold green]streamrec is serving at {base}[/] "
                          f"(ready in {ready_in:.1f}s; API docs at {base}/docs)\n")
            show_samples(base, users)
            purchase = '{"user_id":"user-1","item_id":"item-c0-3","event_type":"purchase"}'
            console.print(f"\nTry:\n  curl '{base}/v1/users/user-1/recommendations?n=5'\n"
                          f"  curl -X POST {base}/v1/events -H 'content-type: application/json' "
                          f"-d '{purchase}'\n  curl '{base}/v1/trending?n=5&category=c2'\n"
                          f"\n{rate:.0f} synthetic events/s are flowing. Ctrl-C stops everything.")
            while True:
                ensure_alive(children, logs)
                time.sleep(1.0)
        except KeyboardInterrupt:
            console.print("\nstopping ...")
        finally:
            for process in reversed(children.values()):
                stop_child(process)
    console.print("stopped: broker, Redis, worker, service and traffic have exited.")
