"""The one-command demo: the stack (`stack.py`) with synthetic shoppers feeding it, until
Ctrl-C stops everything."""

import json
import signal
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from rich.table import Table

from streamrec import output
from streamrec.contract import Settings
from streamrec.datasets import make_world

from .stack import EMBEDDED_BROKER_LIMITS, FIRST_KEYS, Stack, running_stack

console = output.console()


def get_json(url: str, key: str | None = None, timeout: float = 2.0) -> tuple[int, Any]:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {key}"} if key
                                     else {})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"null")
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return 0, None


def wait_until(check: Any, what: str, stack: Stack, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        stack.check_alive()
        if check():
            return
        time.sleep(0.25)
    raise TimeoutError(f"{what} not ready after {timeout:.0f}s; logs in {stack.logs}")


def personalised(base: str, user: str, key: str) -> dict[str, Any] | None:
    """The user's list if co-occurrence already shapes it."""
    status, body = get_json(f"{base}/v1/users/{user}/recommendations?n=5", key)
    if status == 200 and any(item["source"] == "co-occurrence" for item in body["items"]):
        return body
    return None


def show_samples(base: str, users: int, key: str, shown: int = 3) -> None:
    world = make_world(users=users)
    samples = ((user, personalised(base, user, key)) for user in world.users)
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


def stop_on_signals() -> None:
    """Ctrl-C and SIGTERM stop everything, even where SIGINT was inherited as ignored (shells
    start background jobs that way, and Python keeps an inherited "ignore")."""
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.default_int_handler)


def announce(stack: Stack) -> None:
    console.print(f"broker   {stack.settings.kafka_bootstrap_servers}\n"
                  f"redis    {stack.settings.redis_url}\n"
                  f"service  {stack.service_url} (API docs at {stack.service_url}/docs)\n"
                  f"logs     {stack.logs}/\n"
                  f"keys     {stack.settings.api_keys_file}", highlight=False)
    for name, key in stack.new_keys.items():
        console.print(f"  {name:<6} ({', '.join(FIRST_KEYS[name])}): {key}", highlight=False,
                      soft_wrap=True)
    if not stack.new_keys:
        console.print("  (made earlier; `streamrec keys create --file FILE` adds one)")
    console.print(f"[yellow]note:[/] {EMBEDDED_BROKER_LIMITS}")


def run_up(settings: Settings, data_dir: Path | None) -> None:
    """Broker, Redis, worker and service until Ctrl-C; with `data_dir`, Redis keeps its state
    there across restarts."""
    stop_on_signals()
    with tempfile.TemporaryDirectory(prefix="streamrec-up-") as scratch:
        workdir = data_dir or Path(scratch)
        workdir.mkdir(parents=True, exist_ok=True)
        try:
            with running_stack(settings, workdir, persist=data_dir is not None) as stack:
                announce(stack)
                console.print("\n[bold green]streamrec is up.[/] Ctrl-C drains and stops.")
                while True:
                    stack.check_alive()
                    time.sleep(1.0)
        except KeyboardInterrupt:
            console.print("\nstopped: the service, then the worker once it had applied "
                          "everything, then the broker and Redis.")


def run_demo(settings: Settings, rate: float, users: int) -> None:
    started = time.monotonic()
    stop_on_signals()
    logs = Path("runs") / time.strftime("demo-%Y%m%d-%H%M%S")
    logs.mkdir(parents=True, exist_ok=True)
    try:
        # Fresh keys every run: the demo prints them and its traffic browses with one.
        fresh = settings.model_copy(update={"api_keys_file": None})
        with running_stack(fresh, logs, persist=False) as stack:
            base = stack.service_url
            app_key = stack.new_keys["app"]
            stack.start("traffic", "traffic", "--rate", str(rate), "--users", str(users),
                        "--service", base, STREAMREC_API_KEY=app_key)
            announce(stack)
            wait_until(lambda: get_json(f"{base}/readyz")[0] == 200, "the service", stack)
            sample_users = make_world(users=users).users[:20]
            wait_until(lambda: any(personalised(base, u, app_key) for u in sample_users),
                       "personalised recommendations", stack)
            ready_in = time.monotonic() - started
            console.print(f"\n[bold green]streamrec is serving at {base}[/] "
                          f"(ready in {ready_in:.1f}s; API docs at {base}/docs)\n")
            show_samples(base, users, app_key)
            purchase = '{"user_id":"user-1","item_id":"item-c0-3","event_type":"purchase"}'
            auth = f"-H 'Authorization: Bearer {app_key}'"
            console.print(f"\nTry:\n  curl {auth} '{base}/v1/users/user-1/recommendations?n=5'\n"
                          f"  curl {auth} -X POST {base}/v1/events "
                          f"-H 'content-type: application/json' -d '{purchase}'\n"
                          f"  curl {auth} '{base}/v1/trending?n=5&category=c2'\n"
                          f"\n{rate:.0f} synthetic events/s are flowing. Ctrl-C stops everything.",
                          highlight=False, soft_wrap=True)
            while True:
                stack.check_alive()
                time.sleep(1.0)
    except KeyboardInterrupt:
        console.print("\nstopping ...")
    console.print("stopped: broker, Redis, worker, service and traffic have exited.")
