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


#: The demo's experiment: trending only (the control) against the blend, which the shoppers,
#: who click what suits their hidden taste, should prefer.
DEMO_EXPERIMENT = {"name": "blend-vs-trending", "variants": [
    {"name": "trending", "share": 0.5, "settings": {"recommender": "trending"}},
    {"name": "blend", "share": 0.5, "settings": {}}]}
#: How often the demo reads the experiment's results.
RESULTS_EVERY_SECONDS = 10.0
#: How often `up` asks the service whether it is ready.
READINESS_EVERY_SECONDS = 2.0


def get_json(url: str, key: str | None = None, timeout: float = 2.0,
             body: object = None) -> tuple[int, Any]:
    """GET `url` (POST `body` when given) and decode the answer: (status, JSON); 0 when
    nothing answered, None for an answer that is not JSON."""
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    data = None
    if body is not None:
        headers["Content-Type"] = "application/json"
        data = json.dumps(body).encode()
    request = urllib.request.Request(url, headers=headers, data=data)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, decoded(response.read())
    except urllib.error.HTTPError as error:
        return error.code, decoded(error.read())
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return 0, None


def decoded(body: bytes) -> Any:
    try:
        return json.loads(body)
    except ValueError:  # e.g. a proxy's HTML error page
        return None


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


def readiness_problems(base: str) -> str:
    """What the service's /readyz says stands in the way, in a line ('' when ready)."""
    status, body = get_json(f"{base}/readyz")
    if status == 200:
        return ""
    if not isinstance(body, dict):
        return f"the service did not answer /readyz (status {status})"
    problems = [f"{name} unreachable" for name in ("redis", "kafka") if body.get(name) is False]
    by_reason: dict[str, list[str]] = {}
    for partition, reason in (body.get("stalled") or {}).items():
        by_reason.setdefault(reason, []).append(partition)
    problems += [f"{', '.join(sorted(partitions))} stalled: {reason}"
                 for reason, partitions in by_reason.items()]
    if body.get("pseudonym_key") is False:
        problems.append("the service's STREAMREC_ID_HMAC_KEY is not the state's")
    return "; ".join(problems) or f"/readyz answered {status}"


def run_up(settings: Settings, data_dir: Path | None) -> None:
    """Broker, Redis, worker and service until Ctrl-C; with `data_dir`, Redis keeps its state
    there across restarts. Says whenever the service stops or starts being ready (a stalled
    partition, Redis or Kafka unreachable, another pseudonym key), so a worker that cannot
    apply is not silent."""
    stop_on_signals()
    with tempfile.TemporaryDirectory(prefix="streamrec-up-") as scratch:
        workdir = data_dir or Path(scratch)
        workdir.mkdir(parents=True, exist_ok=True)
        try:
            with running_stack(settings, workdir, persist=data_dir is not None) as stack:
                announce(stack)
                console.print("\n[bold green]streamrec is up.[/] Ctrl-C drains and stops.")
                reported = ""
                while True:
                    stack.check_alive()
                    problems = readiness_problems(stack.service_url)
                    if problems != reported:
                        console.print(f"[bold red]not ready:[/] {problems}" if problems
                                      else "[bold green]ready again.[/]", highlight=False)
                        reported = problems
                    time.sleep(READINESS_EVERY_SECONDS)
        except KeyboardInterrupt:
            console.print("\nstopped: the service, then the worker once it had applied "
                          "everything, then the broker and Redis.")


def start_experiment(base: str, admin_key: str) -> str:
    status, body = get_json(f"{base}/v1/experiments", admin_key, body=DEMO_EXPERIMENT)
    if status != 201:
        raise RuntimeError(f"the demo's experiment was refused ({status}): {body}")
    return (f"\nAn experiment runs: half the shoppers get trending only, half the blend. "
            f"Its results:\n  curl -H 'Authorization: Bearer {admin_key}' "
            f"'{base}/v1/experiments/{DEMO_EXPERIMENT['name']}/results'")


def report_experiment(base: str, admin_key: str, started: float) -> bool:
    """Print the experiment's verdict once it has one; True then."""
    status, results = get_json(f"{base}/v1/experiments/{DEMO_EXPERIMENT['name']}/results",
                               admin_key)
    if status != 200:
        return False
    for comparison in results["comparisons"]:
        if comparison["significant"]:
            low, high = comparison["ci"]
            console.print(
                f"[bold]experiment[/] after {time.monotonic() - started:.0f}s: "
                f"{comparison['variant']} beats {comparison['against']}, CTR lift "
                f"{comparison['lift']:+.0%} (always-valid 95% interval {low:+.0%} to "
                f"{high:+.0%}, mSPRT p = {comparison['p_value']:.2g})", highlight=False)
            return True
    return False


def run_demo(settings: Settings, rate: float, users: int, experiment: bool = True) -> None:
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
            experiment_started = next_look = time.monotonic()
            if experiment:
                console.print(start_experiment(base, stack.new_keys["admin"]),
                              highlight=False, soft_wrap=True)
            declared = not experiment
            while True:
                stack.check_alive()
                time.sleep(1.0)
                if not declared and time.monotonic() >= next_look:
                    next_look += RESULTS_EVERY_SECONDS
                    declared = report_experiment(base, stack.new_keys["admin"],
                                                 experiment_started)
    except KeyboardInterrupt:
        console.print("\nstopping ...")
    console.print("stopped: broker, Redis, worker, service and traffic have exited.")
