"""The README's HTTP examples, from a real run: `streamrec examples` starts the stack with the
demo's shoppers, waits until their lists are personalised and clicked (about a minute), then
sends each example request and prints it as a curl command with its answer pretty-printed;
`--readme README.md` rewrites the README's block between its markers.

Timestamps in the examples are relative to the reader's clock (`$(date ...)` in the command,
the time of the run in the request sent), so none is "too far in the future" on a machine
whose clock is behind the one that made the README.
"""

import json
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from streamrec.contract import Settings
from streamrec.output import replace_section
from streamrec.servers import free_port

from .demo import console, stop_on_signals, wait_until
from .stack import running_stack

README_START = ("<!-- examples:start (written by `streamrec examples --readme README.md` "
                "from a real run; edits here are overwritten) -->")
README_END = "<!-- examples:end -->"
#: Where the README says the service is (the demo's default) and the keys it uses.
SHOWN_BASE = "http://127.0.0.1:8000"
SHOWN_KEYS = {"app": "$KEY", "admin": "$ADMIN_KEY"}
#: Placeholders in a body: the time of the request, as the reader's shell writes it.
NOW_MS, NOW_NAIVE = "{now_ms}", "{now_naive}"
SHELL_TIMES = {NOW_MS: "'\"$(date +%s)000\"'", NOW_NAIVE: "'\"$(date -u +%FT%T)\"'"}
#: The demo's shoppers, and how long they may take to make every example meaningful.
DEMO_RATE, DEMO_USERS, READY_SECONDS = 200.0, 300, 300.0


@dataclass(frozen=True)
class Example:
    method: str
    path: str  # with its query
    key: str | None  # "app", "admin", or None for an open path
    body: str | None = None  # JSON, with NOW_MS / NOW_NAIVE where a timestamp goes

    def command(self) -> str:
        """The curl command a reader types (against the demo, with their keys)."""
        parts = ["curl -s"]
        if self.key is not None:
            parts.append(f'-H "Authorization: Bearer {SHOWN_KEYS[self.key]}"')
        if self.method != "GET":
            parts.append(f"-X {self.method}")
        url = f"{SHOWN_BASE}{self.path}"
        parts.append(f"'{url}'" if "?" in url else url)
        if self.body is not None:
            shell_body = self.body
            for placeholder, shell in SHELL_TIMES.items():
                shell_body = shell_body.replace(placeholder, shell)
            parts.append(f"-H 'content-type: application/json' -d '{shell_body}'")
        return " ".join(parts) + " | python3 -m json.tool"

    def send(self, base: str, keys: Mapping[str, str]) -> Any:
        """The answer of the running service at `base`, as JSON."""
        headers = {} if self.key is None else {"Authorization": f"Bearer {keys[self.key]}"}
        content = None
        if self.body is not None:
            now = time.time()
            content = self.body.replace(NOW_MS, str(int(now * 1000))).replace(
                NOW_NAIVE, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)))
            headers["content-type"] = "application/json"
        answer = httpx.request(self.method, f"{base}{self.path}", headers=headers,
                               content=content, timeout=10)
        return answer.json()


EXAMPLES = (
    Example("GET", "/v1/users/user-7/recommendations?n=2", "app"),
    Example("GET", "/v1/users/user-7/recommendations?n=2&category=c3&exclude=item-c3-0", "app"),
    Example("GET", "/v1/users/newcomer/recommendations?n=2", "app"),
    Example("GET", "/v1/items/item-c3-1/similar?n=2", "app"),
    Example("GET", "/v1/trending?n=2&category=c5", "app"),
    Example("POST", "/v1/events", "app",
            '[{"user_id":"user-7","item_id":"item-c3-5","event_type":"add_to_cart"},'
            '{"event_id":"evt-42","user_id":"user-8","item_id":"item-c1-2",'
            f'"event_type":"click","timestamp":{NOW_MS}}}]'),
    Example("POST", "/v1/events", "app",
            '{"user_id":"user-7","item_id":"item-c3-5","event_type":"like",'
            f'"timestamp":"{NOW_NAIVE}"}}'),
    Example("POST", "/v1/items", "admin",
            '{"item_id":"item-new-1","categories":["c3"],"tags":["summer"],'
            '"title":"Straw hat"}'),
    Example("GET", "/v1/metrics", "admin"),
    Example("GET", "/readyz", None),
    Example("PUT", "/v1/users/newcomer/preferences", "app", '{"categories":["c2"]}'),
    Example("GET", "/v1/users/newcomer/recommendations?n=2", "app"),
    Example("POST", "/v1/sessions/recommendations", "app",
            '{"items":["item-c3-1","item-c3-4"],"n":2}'),
    Example("GET", "/v1/users/user-3/recommendations?n=3&max_per_category=1", "app"),
)


def ready_for_examples(base: str, keys: Mapping[str, str]) -> bool:
    """Every example shows what it is meant to: the demo users' lists are learned, the item
    has co-occurring neighbours, and both recommenders' lists have been clicked (a CTR)."""
    app = {"Authorization": f"Bearer {keys['app']}"}
    admin = {"Authorization": f"Bearer {keys['admin']}"}
    try:
        for path in ("/v1/users/user-7/recommendations?n=2",
                     "/v1/users/user-3/recommendations?n=3", "/v1/items/item-c3-1/similar?n=2"):
            items = httpx.get(f"{base}{path}", headers=app, timeout=5).json()["items"]
            if not items or items[0]["source"] == "trending":
                return False
        recommenders = httpx.get(f"{base}/v1/metrics", headers=admin,
                                 timeout=5).json()["recommenders"]
    except (httpx.HTTPError, KeyError, ValueError):
        return False
    return all(recommenders.get(name, {}).get("ctr") for name in ("personalised", "trending"))


def run_examples(base: str, keys: Mapping[str, str]) -> list[tuple[Example, Any]]:
    return [(example, example.send(base, keys)) for example in EXAMPLES]


def examples_block(answers: list[tuple[Example, Any]]) -> str:
    """The console block: each command and its answer, as `python3 -m json.tool` prints it."""
    shown = [f"$ {example.command()}\n{json.dumps(answer, indent=4)}"
             for example, answer in answers]
    return "```console\n" + "\n\n".join(shown) + "\n```"


def parse_block(text: str) -> list[tuple[str, Any]]:
    """(command, answer) of each example in a README's block."""
    start, end = text.index(README_START), text.index(README_END)
    block = text[start + len(README_START):end].strip()
    block = block.removeprefix("```console").removesuffix("```").strip()
    pairs = []
    for chunk in block.split("\n\n$ "):
        command, _, answer = chunk.removeprefix("$ ").partition("\n")
        pairs.append((command, json.loads(answer)))
    return pairs


def generate_examples(settings: Settings, readme: Path | None) -> str:
    """Start the stack and the demo's shoppers, wait until the examples are meaningful, run
    them and print the block (and write it into `readme`)."""
    stop_on_signals()
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="streamrec-examples-") as scratch:
        # Fresh keys, and a free port: the README shows the demo's, whatever this run used.
        fresh = settings.model_copy(update={"api_keys_file": None, "http_port": free_port()})
        with running_stack(fresh, Path(scratch), persist=False) as stack:
            keys = stack.new_keys
            stack.start("traffic", "traffic", "--rate", str(DEMO_RATE), "--users",
                        str(DEMO_USERS), "--service", stack.service_url,
                        STREAMREC_API_KEY=keys["app"])
            console.print("waiting until the demo's lists are personalised and clicked ...")
            wait_until(lambda: ready_for_examples(stack.service_url, keys), "the examples",
                       stack, READY_SECONDS)
            console.print(f"ready after {time.monotonic() - started:.0f}s of demo traffic")
            block = examples_block(run_examples(stack.service_url, keys))
    console.print(block, highlight=False, markup=False)
    if readme is not None:
        replace_section(readme, README_START, README_END, block)
        console.print(f"wrote the examples into {readme}")
    return block
