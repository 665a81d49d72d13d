"""Soak: honest traffic alone, then the same honest traffic beside hostile clients, then
honest alone again, against one service process; the honest client's p99 and error rate in
each phase side by side, and whether every honest event the service accepted was applied.

Why: the guards (body limits 413, stalled bodies 408, 415, admission control 503, per-key
rate 429) are tested one at a time in tests/system. This measures what they leave to an
honest client when every hostile behaviour runs at once, for minutes, each hostile client
with its own API key: a flood of n=500 lists with many requests in flight, 5 MB bodies
(declared and chunked), stalled and drip-fed bodies and headers (slowloris), impression
batches as large as the body limit allows, and bad or look-alike records.

Processes (as bench/run.py): embedded broker and Redis, one worker, one service. The honest
client and the hostile clients each run in their own process (this file with `--role`), so
neither shares an event loop with the other or with this orchestrator. All of them share the
machine's cores, the hostile process included: on a small machine part of what the honest
client loses is CPU the attackers' own process takes, which a remote attacker would not.

Run from the repository root: `python bench/soak.py` (about 3.5 minutes). Prints a table per
phase and writes bench/results/soak.json (and soak.png); logs stay in the printed temp dir.
No assertions: it is a benchmark.
"""

import argparse
import asyncio
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import aiohttp
import httpx
import redis
from run import machine, synthetic_events

from streamrec import output
from streamrec.contract import RedisKeys, Settings, create_key, ensure_topics, produce_records
from streamrec.servers import (
    child_environment,
    embedded_servers,
    free_port,
    start_child,
    stop_child,
    wait_until_healthy,
)

ROOT = Path(__file__).resolve().parent
RESULTS = ROOT / "results"
console = output.console()

#: API keys: the honest client, an admin for /v1/metrics, and one per hostile client.
KEYS = {"honest": ["read", "write"], "admin": ["admin"], "flood": ["read"], "heavy": ["read"],
        "oversized": ["read", "write"], "slowloris": ["read", "write"],
        "impressions": ["read", "write"], "bad": ["read", "write"]}
#: The honest client's request mix, in turn: 4 personalised, 3 similar, 1 trending and
#: 2 POSTs of EVENTS_PER_POST events in every 10 requests.
MIX = ["personalised", "similar", "personalised", "trending", "events",
       "personalised", "similar", "events", "personalised", "similar"]
EVENTS_PER_POST = 5
HONEST_USERS_PER_PHASE = 40
HONEST_TIMEOUT = 5.0  # seconds; a slower answer is an error (and counts 5 s)
BIG_BODY = 5 * 1024 * 1024
HOSTILE = ["flood", "heavy", "oversized", "slowloris", "impressions", "bad"]


def quantile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    return sorted_values[min(len(sorted_values) - 1, int(len(sorted_values) * q))]


async def outcome(request: object) -> tuple[str, bytes]:
    """Status code (as text) and body of a request context, or the transport error's name."""
    try:
        async with request as response:
            return str(response.status), await response.read()
    except TimeoutError:
        return "timeout", b""
    except aiohttp.ClientError as error:
        return type(error).__name__, b""


async def until(epoch: float) -> None:
    await asyncio.sleep(max(0.0, epoch - time.time()))


# --- the honest client (its own process) -----------------------------------------------

async def honest(config: dict) -> dict:
    """Open loop at `rate`: requests start on schedule whether or not earlier ones finished."""
    base, rate, seconds, phase = config["base"], config["rate"], config["seconds"], config["phase"]
    rng = random.Random(phase)
    records: list[tuple[float, str, str, float]] = []  # start offset s, kind, status, ms
    accepted: dict[str, list[str]] = {}
    connector = aiohttp.TCPConnector(limit=256)
    async with aiohttp.ClientSession(
            connector=connector, timeout=aiohttp.ClientTimeout(total=HONEST_TIMEOUT),
            headers={"Authorization": f"Bearer {config['key']}"}) as session:

        async def one(k: int, begin: float) -> None:
            kind, warm = MIX[k % len(MIX)], k % 1000
            if kind == "events":
                user = f"honest-{phase}-{k % HONEST_USERS_PER_PHASE}"
                now = int(time.time() * 1000)
                batch = [{"event_id": f"{phase}-{k}-{j}", "user_id": user,
                          "item_id": f"i{rng.randrange(1000)}", "timestamp": now,
                          "event_type": rng.choice(["view", "view", "click", "purchase"])}
                         for j in range(EVENTS_PER_POST)]
                request = session.post(f"{base}/v1/events", data=json.dumps(batch),
                                       headers={"Content-Type": "application/json"})
            else:
                path = {"personalised": f"/v1/users/u{warm}/recommendations?n=10",
                        "similar": f"/v1/items/i{warm}/similar?n=10",
                        "trending": "/v1/trending?n=10"}[kind]
                request = session.get(base + path)
            started = time.perf_counter()
            status, body = await outcome(request)
            records.append((started - begin, kind, status,
                            (time.perf_counter() - started) * 1000))
            if kind == "events" and status == "202":
                accepted.setdefault(user, []).extend(json.loads(body)["ids"])

        await until(config["start_at"])
        wall_start, begin = time.time(), time.perf_counter()
        tasks = []
        for k in range(int(rate * seconds)):
            delay = begin + k / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(k, begin)))
        await asyncio.gather(*tasks)
        elapsed = time.perf_counter() - begin
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return {"phase": phase, "offered": rate, "seconds": seconds, "elapsed": elapsed,
            "wall_start": wall_start, "records": records, "accepted": accepted,
            "cpu_seconds": usage.ru_utime + usage.ru_stime}


# --- the hostile clients (one process, each client with its own key) -------------------

def session_for(key: str, limit: int = 16, timeout: float = 15.0) -> aiohttp.ClientSession:
    return aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=limit),
                                 timeout=aiohttp.ClientTimeout(total=timeout),
                                 headers={"Authorization": f"Bearer {key}"})


async def flood(base: str, key: str, deadline: float, concurrency: int = 32,
                most: int = 200_000) -> dict:
    """Lists of 500 as fast as `concurrency` requests in flight allow (a read-only key)."""
    paths = ["/v1/users/u{k}/recommendations?n=500", "/v1/items/i{k}/similar?n=500",
             "/v1/trending?n=500"]
    counts: Counter[str] = Counter()
    sent = 0
    async with session_for(key, limit=concurrency) as session:
        async def loop() -> None:
            nonlocal sent
            while time.time() < deadline and sent < most:
                k, sent = sent, sent + 1
                status, _ = await outcome(session.get(base + paths[k % 3].format(k=k % 1000)))
                counts[status] += 1

        await asyncio.gather(*(loop() for _ in range(concurrency)))
    return {"client": f"flood: n=500 lists, {concurrency} in flight", "requests": sent,
            "status": dict(counts)}


async def chunks(size: int, piece: int = 64 * 1024) -> AsyncIterator[bytes]:
    yield b"["
    for _ in range(size // piece):
        yield b" " * piece
    yield b"]"


async def oversized(base: str, key: str, deadline: float, chunked: bool, most: int = 300,
                    pause: float = 0.1) -> dict:
    """5 MB bodies to /v1/events (limit 1 MiB) and the sessions endpoint (64 KiB), one at a
    time with a short pause: with Content-Length, or chunked (the length unknown up front)."""
    counts: Counter[str] = Counter()
    sent = 0
    declared = b"[" + b" " * (BIG_BODY - 2) + b"]"
    async with session_for(key, limit=2) as session:
        while time.time() < deadline and sent < most:
            path = ("/v1/events", "/v1/sessions/recommendations")[sent % 2]
            body = chunks(BIG_BODY) if chunked else declared
            status, _ = await outcome(session.post(
                base + path, data=body, headers={"Content-Type": "application/json"}))
            counts[f"{path.split('/')[2]} {status}"] += 1
            sent += 1
            await asyncio.sleep(pause)
    kind = "chunked" if chunked else "with Content-Length"
    return {"client": f"oversized: 5 MB bodies, {kind}", "requests": sent,
            "status": dict(counts)}


async def trickle(writer: asyncio.StreamWriter, first: bytes, then: bytes,
                  interval: float) -> None:
    """Send `first`, then `then` every `interval` seconds (nothing more if it is empty)."""
    writer.write(first)
    await writer.drain()
    while then:
        await asyncio.sleep(interval)
        writer.write(then)
        await writer.drain()


async def slow_connection(host: str, port: int, key: str, mode: str, deadline: float,
                          interval: float = 3.0) -> list[dict]:
    """Slowloris, one socket at a time (reconnecting after each answer): 'drip' sends a body
    byte every `interval` s (under the 10 s body timeout), 'stall' sends one and stops,
    'headers' sends a header byte every `interval` s and never finishes the headers."""
    outcomes = []
    while time.time() < deadline - 1 and len(outcomes) < 50:
        opened = time.time()
        try:
            reader, writer = await asyncio.open_connection(host, port)
        except OSError as error:  # the service is gone: note it, do not spin
            outcomes.append({"mode": mode, "outcome": type(error).__name__, "held_s": 0.0})
            await asyncio.sleep(interval)
            continue
        head = (f"POST /v1/events HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {key}\r\n"
                "Content-Type: application/json\r\nContent-Length: 60000\r\n")
        first, drip = ((head + "\r\n[").encode(), b" ") if mode != "headers" else (
            (head + "X-Slow: ").encode(), b"a")
        sender = asyncio.create_task(trickle(writer, first, drip if mode != "stall" else b"",
                                             interval))
        try:
            line = await asyncio.wait_for(reader.readline(), max(0.1, deadline - time.time()))
            result = line.split()[1].decode() if line else "closed without an answer"
        except TimeoutError:
            result = "held until the end"
        except OSError as error:
            result = type(error).__name__
        sender.cancel()
        await asyncio.gather(sender, return_exceptions=True)
        writer.close()
        outcomes.append({"mode": mode, "outcome": result, "held_s": time.time() - opened})
    return outcomes


async def slowloris(base: str, key: str, deadline: float, per_mode: int = 2) -> dict:
    host, port = base.removeprefix("http://").split(":")
    found = await asyncio.gather(*(slow_connection(host, int(port), key, mode, deadline)
                                   for mode in ("drip", "stall", "headers")
                                   for _ in range(per_mode)))
    connections = [entry for per_socket in found for entry in per_socket]
    counts = Counter(f"{c['mode']}: {c['outcome']}" for c in connections)
    return {"client": f"slowloris: {per_mode} sockets each drip/stall/headers",
            "requests": len(connections), "status": dict(counts),
            "longest_held_s": max((c["held_s"] for c in connections), default=0.0)}


def impression_batch(count: int, ids: int, tag: str, limit: int) -> tuple[bytes, int]:
    """`count` impressions of `ids` items each (fewer impressions if that exceeds `limit`),
    every one with its own recommendation id (each makes the worker store a list)."""
    now = int(time.time() * 1000)
    while True:
        body = json.dumps([{
            "event_id": f"imp-{tag}-{j}", "user_id": f"hostile-imp-{j % 100}",
            "event_type": "impression", "item_ids": [f"i{m}" for m in range(ids)],
            "recommender": "unattributed", "recommendation_id": f"rec-{tag}-{j}",
            "timestamp": now} for j in range(count)], separators=(",", ":")).encode()
        if len(body) <= limit:
            return body, count
        count = int(count * limit / len(body) * 0.99)


async def impressions(base: str, key: str, deadline: float, seconds: float, most: int,
                      limit: int) -> dict:
    """`most` requests spread over the phase, alternating two shapes within the body limit:
    as many 500-item impressions as fit, and 1,000 impressions with as many items as fit."""
    counts: Counter[str] = Counter()
    shapes: Counter[str] = Counter()
    sent_impressions = 0
    # The most items per impression that let 1,000 of them fit: from the size of 10 and 110.
    short, long = (len(impression_batch(1000, ids, "longest-tag", 2**30)[0]) for ids in (10, 110))
    small_ids = 10 + int((limit - short) / ((long - short) / 100))
    while impression_batch(1000, small_ids, "longest-tag", limit)[1] < 1000:
        small_ids -= 1
    async with session_for(key, limit=2) as session:
        for k in range(most):
            if time.time() >= deadline:
                break
            ids = 500 if k % 2 == 0 else small_ids
            body, count = impression_batch(1000, ids, f"{k}", limit)
            shape = f"{count} x {ids} items"
            shapes[shape] += 1
            status, _ = await outcome(session.post(
                f"{base}/v1/events", data=body, headers={"Content-Type": "application/json"}))
            counts[status] += 1
            sent_impressions += count if status == "202" else 0
            await asyncio.sleep(max(0.0, seconds / most - 0.05))
    return {"client": "impressions: batches at the body limit", "shapes": dict(shapes),
            "requests": sum(counts.values()), "status": dict(counts),
            "impressions_accepted": sent_impressions}


def bad_requests(reader_key: str) -> list[tuple[str, str, str, bytes, dict]]:
    """(kind, method, path, body, headers): records and requests the service must refuse,
    and look-alike ids it must accept as what they are (distinct users, or NFC-equal)."""
    now = int(time.time() * 1000)

    def event(**fields: object) -> bytes:
        return json.dumps([{"event_id": f"bad-{random.random()}", "user_id": "u1",
                            "item_id": "i1", "event_type": "view", "timestamp": now,
                            **fields}]).encode()

    as_json = {"Content-Type": "application/json"}
    events = "/v1/events"
    return [
        ("invalid JSON", "POST", events, b'[{"event_id": "x", ', as_json),
        ("invalid UTF-8", "POST", events, event()[:12] + b"\xff\xfe" + event()[12:], as_json),
        ("deep nesting", "POST", events, b"[" * 5000 + b"]" * 5000, as_json),
        ("wrong types", "POST", events, event(user_id=42, timestamp="soon"), as_json),
        ("missing field", "POST", events, json.dumps([{"user_id": "u1"}]).encode(), as_json),
        ("extra field", "POST", events, event(surprise=1), as_json),
        ("unknown event type", "POST", events, event(event_type="like"), as_json),
        ("epoch seconds", "POST", events, event(timestamp=now // 1000), as_json),
        ("far future", "POST", events, event(timestamp=now + 10**10), as_json),
        ("zero-width id", "POST", events, event(user_id="u1\u200b"), as_json),
        ("bidi control id", "POST", events, event(item_id="i1\u202egnp"), as_json),
        ("slash in id", "POST", events, event(item_id="i/1"), as_json),
        ("not JSON content type", "POST", events, event(), {"Content-Type": "text/plain"}),
        ("session wrong types", "POST", "/v1/sessions/recommendations",
         b'{"items": "i1", "n": "many"}', as_json),
        ("n too large", "GET", "/v1/trending?n=100000", b"", {}),
        ("10k-char id in path", "GET", f"/v1/users/{'u' * 10_000}/recommendations", b"", {}),
        ("look-alike: Cyrillic u (accepted, a new user)", "POST", events,
         event(user_id="\u04431"), as_json),
        ("look-alike: decomposed é (accepted as é)", "POST", events,
         event(user_id="use\u0301"), as_json),
        ("look-alike: fullwidth (accepted, a new user)", "POST", events,
         event(user_id="\uff551"), as_json),
        ("read-only key posts events", "POST", events, event(),
         {**as_json, "Authorization": f"Bearer {reader_key}"}),
        ("unknown key", "GET", "/v1/trending", b"", {"Authorization": "Bearer sr_nothing"}),
        ("no key", "GET", "/v1/trending", b"", {"Authorization": ""}),
    ]


async def bad_records(base: str, key: str, reader_key: str, deadline: float,
                      rate: float = 100.0, most: int = 10_000) -> dict:
    """The requests of `bad_requests` in turn at `rate` (under the key's rate limit, so the
    service validates each instead of refusing it with 429)."""
    by_kind: dict[str, Counter[str]] = {}
    sent = 0
    async with session_for(key, limit=8) as session:
        begin = time.time()
        while time.time() < deadline and sent < most:
            if sent % 22 == 0:
                requests = bad_requests(reader_key)  # fresh event ids and times
            kind, method, path, body, headers = requests[sent % len(requests)]
            status, _ = await outcome(session.request(method, base + path, data=body or None,
                                                      headers=headers))
            by_kind.setdefault(kind, Counter())[status] += 1
            sent += 1
            await asyncio.sleep(max(0.0, begin + sent / rate - time.time()))
    total = sum(by_kind.values(), Counter())
    return {"client": f"bad records and look-alike ids, {rate:.0f} req/s", "requests": sent,
            "status": dict(total), "by_kind": {k: dict(v) for k, v in by_kind.items()}}


async def hostile(config: dict) -> dict:
    base, keys, seconds = config["base"], config["keys"], config["seconds"]
    await until(config["start_at"])
    deadline = time.time() + seconds
    attacks = {
        "flood": lambda: flood(base, keys["flood"], deadline),
        # one request at a time stays within its share: only its rate limit holds it back
        "heavy": lambda: flood(base, keys["heavy"], deadline, concurrency=1),
        "oversized": lambda: asyncio.gather(
            oversized(base, keys["oversized"], deadline, chunked=False),
            oversized(base, keys["oversized"], deadline, chunked=True)),
        "slowloris": lambda: slowloris(base, keys["slowloris"], deadline),
        "impressions": lambda: impressions(base, keys["impressions"], deadline, seconds,
                                           config["impression_requests"],
                                           config["max_request_bytes"]),
        "bad": lambda: bad_records(base, keys["bad"], keys["flood"], deadline),
    }
    found = await asyncio.gather(*(attacks[name]() for name in config["clients"]))
    clients = [c for result in found for c in (result if isinstance(result, list) else [result])]
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return {"clients": list(clients), "cpu_seconds": usage.ru_utime + usage.ru_stime}


# --- the orchestrator -------------------------------------------------------------------

def spawn(role: str, config: dict, log: Path) -> subprocess.Popen:
    """This file as a child with `role`; its config on stdin, its result on stdout."""
    process = subprocess.Popen([sys.executable, __file__, "--role", role], text=True,
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                               stderr=log.open("a"))
    process.stdin.write(json.dumps(config))
    process.stdin.close()
    return process


def collect(process: subprocess.Popen, log: Path) -> dict:
    output = process.stdout.read()
    if process.wait() != 0:
        raise RuntimeError(f"{process.args[-1]} client failed; see {log}")
    return json.loads(output)


def counters(base: str, admin: str) -> dict[str, int]:
    return httpx.get(f"{base}/v1/metrics", headers={"Authorization": f"Bearer {admin}"},
                     timeout=30).json()["counters"]


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def watch_applied(redis_url: str, keys: RedisKeys, accepted: dict[str, list[str]],
                  since: float, into: dict, limit_seconds: float = 90.0) -> None:
    """Poll until every accepted honest event id is in its user's applied-ids set (the
    worker's dedup window): how many were applied, and how long after the phase's end."""
    client = redis.Redis.from_url(redis_url)
    wanted = sum(len(ids) for ids in accepted.values())
    applied = 0
    while True:
        pipe = client.pipeline(transaction=False)
        for user, ids in accepted.items():
            pipe.zmscore(keys.user_event_ids(user), ids)
        applied = sum(score is not None for scores in pipe.execute() for score in scores)
        if applied >= wanted or time.time() - since > limit_seconds:
            break
        time.sleep(0.25)
    client.close()
    into.update({"accepted": wanted, "applied": applied,
                 "all_applied_after_s": time.time() - since if applied >= wanted else None})


def summary(result: dict) -> dict:
    records = result["records"]
    latencies = sorted(r[3] for r in records)
    statuses = Counter(r[2] for r in records)
    errors = sum(n for status, n in statuses.items() if not status.startswith("2"))
    by_kind = {}
    for kind in dict.fromkeys(MIX):
        own = sorted(r[3] for r in records if r[1] == kind)
        by_kind[kind] = {"requests": len(own), "p50_ms": quantile(own, 0.5),
                         "p99_ms": quantile(own, 0.99)}
    per_second: dict[int, list] = {}
    for offset, _, status, ms in records:
        per_second.setdefault(int(offset), []).append((ms, status))
    return {
        "offered": result["offered"], "seconds": result["seconds"], "requests": len(records),
        "ok_per_second": (len(records) - errors) / result["seconds"],
        "p50_ms": quantile(latencies, 0.5), "p95_ms": quantile(latencies, 0.95),
        "p99_ms": quantile(latencies, 0.99), "max_ms": latencies[-1] if latencies else None,
        "errors": errors, "error_rate": errors / max(1, len(records)),
        "status": dict(statuses), "by_kind": by_kind,
        "per_second": [{"second": s, "requests": len(v),
                        "errors": sum(not st.startswith("2") for _, st in v),
                        "p99_ms": quantile(sorted(ms for ms, _ in v), 0.99)}
                       for s, v in sorted(per_second.items())],
        "client_cpu_seconds": result["cpu_seconds"],
    }


def run_phase(name: str, seconds: float, hostile_part: bool, context: dict) -> dict:
    base, keys, args, workdir = (context[k] for k in ("base", "keys", "args", "workdir"))
    pids = context["pids"]
    before = counters(base, keys["admin"])
    cpu_before = {role: cpu_seconds(pid) for role, pid in pids.items()}
    start_at = time.time() + 5.0  # both clients start together, after their imports
    log = workdir / f"clients-{name}.log"
    honest_process = spawn("honest", {"base": base, "key": keys["honest"], "rate": args.rate,
                                      "seconds": seconds, "phase": name, "start_at": start_at},
                           log)
    hostile_process = spawn("hostile", {
        "base": base, "keys": keys, "seconds": seconds, "start_at": start_at,
        "impression_requests": args.impression_requests, "clients": args.hostile,
        "max_request_bytes": context["settings"].max_request_bytes}, log) if hostile_part else None
    honest_result = collect(honest_process, log)
    hostile_result = collect(hostile_process, log) if hostile_process else None
    ended = time.time()
    service = context["service"]
    phase = {"name": name, "hostile": hostile_part, "honest": summary(honest_result),
             "counters_before": before,
             "service_alive": service.poll() is None,
             "service_rss_mib": rss_mib(service.pid) if service.poll() is None else None,
             "cpu_seconds": {role: cpu_seconds(pid) - cpu_before[role]
                             for role, pid in pids.items() if Path(f"/proc/{pid}").exists()},
             "events": {}}
    phase["counters_after"] = counters(base, keys["admin"]) if phase["service_alive"] else {}
    if hostile_result:
        phase["hostile_clients"] = hostile_result["clients"]
        phase["cpu_seconds"]["hostile client"] = hostile_result["cpu_seconds"]
    phase["cpu_seconds"]["honest client"] = honest_result["cpu_seconds"]
    watcher = threading.Thread(target=watch_applied, daemon=True, args=(
        context["settings"].redis_url, RedisKeys(context["settings"].key_prefix),
        honest_result["accepted"], ended, phase["events"]))
    watcher.start()
    context["watchers"].append(watcher)
    context["plot"].append((name, honest_result["wall_start"], seconds,
                            honest_result["records"]))
    h = phase["honest"]
    console.print(f"  honest: {h['ok_per_second']:.0f} ok/s, p50 {h['p50_ms']:.1f} ms, "
                  f"p99 {h['p99_ms']:.1f} ms, errors {h['error_rate']:.2%} {h['status']}")
    for client in phase.get("hostile_clients", []):
        console.print(f"  {client['client']}: {client['requests']} requests, {client['status']}",
                      markup=False, highlight=False)
    return phase


def seed(settings: Settings, base: str, admin: str, count: int) -> float:
    started = time.time()
    events = synthetic_events(count, users=2_000, items=3_000, seed=7)
    asyncio.run(produce_records(settings, settings.events_topic, (
        (e.user_id.encode(), e.model_dump_json().encode()) for e in events), linger_ms=20))
    while counters(base, admin).get("events_applied", 0) < count:
        if time.time() - started > 180:
            raise TimeoutError("the worker did not apply the seed events in 3 minutes")
        time.sleep(0.5)
    return time.time() - started


def log_problems(path: Path, words: tuple[str, ...]) -> dict:
    lines = path.read_text(errors="replace").splitlines() if path.exists() else []
    found = [line for line in lines if any(word in line for word in words)]
    return {"log": str(path), "lines": len(lines), "matching": len(found),
            "first": found[:20]}


def cell(phase: dict, pick: Callable[[dict], str]) -> str:
    try:
        return pick(phase)
    except (KeyError, TypeError):
        return "—"


def applied_in(phase: dict) -> int:
    return phase["counters_after"]["events_applied"] - phase["counters_before"]["events_applied"]


def tables(results: dict) -> str:
    phases = results["phases"]
    rows = [
        ("offered req/s", lambda p: f"{p['honest']['offered']:.0f}"),
        ("answered 2xx/s", lambda p: f"{p['honest']['ok_per_second']:.1f}"),
        ("requests", lambda p: f"{p['honest']['requests']:,}"),
        ("p50 ms", lambda p: f"{p['honest']['p50_ms']:.1f}"),
        ("p95 ms", lambda p: f"{p['honest']['p95_ms']:.1f}"),
        ("p99 ms", lambda p: f"{p['honest']['p99_ms']:.1f}"),
        ("max ms", lambda p: f"{p['honest']['max_ms']:.0f}"),
        ("p99 ms personalised / similar / trending / POST",
         lambda p: " / ".join(f"{p['honest']['by_kind'][k]['p99_ms']:.0f}"
                              for k in ("personalised", "similar", "trending", "events"))),
        ("error rate", lambda p: f"{p['honest']['error_rate']:.2%}"),
        ("status codes", lambda p: ", ".join(f"{k}: {v}" for k, v in
                                             sorted(p["honest"]["status"].items()))),
        ("events accepted → applied", lambda p: f"{p['events']['accepted']:,} → "
         f"{p['events']['applied']:,}"),
        ("all applied after phase end", lambda p: "not within 90 s"
         if p["events"]["all_applied_after_s"] is None
         else f"{p['events']['all_applied_after_s']:.1f} s"),
        ("worker events_applied (all callers)", lambda p: f"{applied_in(p):,}"),
        ("CPU s service / worker / Redis / broker", lambda p: " / ".join(
            f"{p['cpu_seconds'][r]:.0f}" for r in ("service", "worker", "redis", "broker"))),
        ("CPU s honest / hostile client", lambda p: f"{p['cpu_seconds']['honest client']:.0f}"
         f" / {p['cpu_seconds'].get('hostile client', 0):.0f}"),
        ("service RSS MiB", lambda p: f"{p['service_rss_mib']:.0f}"),
    ]
    titles = {"A": "A: honest only", "B": "B: honest + hostile", "C": "C: honest only, after"}
    lines = ["| honest client | " + " | ".join(f"{titles[p['name']]} ({p['honest']['seconds']:.0f}"
                                              " s)" for p in phases) + " |",
             "|---|" + "---|" * len(phases)]
    lines += [f"| {label} | " + " | ".join(cell(p, pick) for p in phases) + " |"
              for label, pick in rows]
    lines += ["", "| hostile client (own key), phase B | requests | answers |", "|---|---|---|"]
    for phase in phases:
        for client in phase.get("hostile_clients", []):
            answers = ", ".join(f"{k}: {v}" for k, v in sorted(client["status"].items()))
            extra = f"; shapes {client['shapes']}, {client['impressions_accepted']:,} accepted" \
                if "shapes" in client else ""
            lines.append(f"| {client['client']} | {client['requests']:,} | {answers}{extra} |")
    return "\n".join(lines)


def plot(results: dict, series: list, path: Path) -> None:
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    zero = series[0][1]
    figure, axis = plt.subplots(figsize=(10, 4))
    for name, wall_start, seconds, records in series:
        shift = wall_start - zero
        for ok, colour, size, label in ((True, "tab:blue", 2, "honest 2xx"),
                                        (False, "tab:red", 6, "honest error")):
            points = [(r[0] + shift, r[3]) for r in records if r[2].startswith("2") == ok]
            if points:
                axis.scatter([x for x, _ in points], [y for _, y in points], s=size,
                             color=colour, label=label if name == ("A" if ok else "B") else None)
        if name == "B":
            axis.axvspan(shift, shift + seconds, color="tab:orange", alpha=0.15,
                         label="hostile clients running")
    axis.set_yscale("log")
    axis.set_xlabel("seconds")
    axis.set_ylabel("honest request latency, ms")
    axis.set_title(f"soak: honest {results['rate']:.0f} req/s alone, beside hostile clients, "
                   "and after")
    axis.legend(loc="upper right", fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--role", choices=["honest", "hostile"], help=argparse.SUPPRESS)
    parser.add_argument("--rate", type=float, default=50.0, help="honest requests per second")
    parser.add_argument("--honest-seconds", type=float, default=60.0, help="phase A")
    parser.add_argument("--hostile-seconds", type=float, default=75.0, help="phase B")
    parser.add_argument("--after-seconds", type=float, default=15.0, help="phase C (0: none)")
    parser.add_argument("--seed-events", type=int, default=20_000)
    parser.add_argument("--impression-requests", type=int, default=40,
                        help="hostile impression batches in phase B (each ~1 MiB)")
    parser.add_argument("--hostile", type=lambda text: text.split(","), default=HOSTILE,
                        help=f"hostile clients of phase B, comma-separated (default: all of "
                        f"{','.join(HOSTILE)})")
    parser.add_argument("--key-rate", type=float, default=Settings().rate_limit_per_second,
                        help="each key's rate limit, units of work a second (the setting)")
    parser.add_argument("--name", default="soak",
                        help="results go to bench/results/NAME.json and NAME.png")
    args = parser.parse_args()
    if unknown := set(args.hostile) - set(HOSTILE):
        parser.error(f"unknown hostile clients {sorted(unknown)}")
    if args.role:
        config = json.loads(sys.stdin.read())
        print(json.dumps(asyncio.run((honest if args.role == "honest" else hostile)(config))))
        return

    RESULTS.mkdir(exist_ok=True)
    began = time.monotonic()
    workdir = Path(tempfile.mkdtemp(prefix="streamrec-soak-"))
    results: dict = {"date": time.strftime("%Y-%m-%d %H:%M"), "machine": machine(),
                     "load_average_before": os.getloadavg(), "workdir": str(workdir),
                     "rate": args.rate, "honest_timeout_s": HONEST_TIMEOUT,
                     "hostile_clients": args.hostile, "phases": []}
    console.rule(f"soak (logs in {workdir})")
    with embedded_servers(workdir) as servers:
        keys_file = workdir / "keys.json"
        keys = {name: create_key(keys_file, name, scopes) for name, scopes in KEYS.items()}
        settings = Settings(kafka_bootstrap_servers=servers.broker.bootstrap_servers,
                            redis_url=servers.redis.url, http_port=free_port(),
                            api_keys_file=keys_file, rate_limit_per_second=args.key_rate)
        results["limits"] = settings.model_dump(mode="json", include={
            "max_request_bytes", "max_small_request_bytes", "max_events_per_request",
            "body_timeout_seconds", "max_inflight_cost", "rate_limit_per_second",
            "rate_limit_burst"})
        asyncio.run(ensure_topics(settings))
        env = child_environment(settings)
        worker = start_child([sys.executable, "-m", "streamrec", "worker"],
                             workdir / "worker.log", env)
        service = start_child([sys.executable, "-m", "streamrec", "serve", "--log-level",
                               "warning"], workdir / "service.log", env)
        base = f"http://127.0.0.1:{settings.http_port}"
        context = {"base": base, "keys": keys, "args": args, "workdir": workdir,
                   "settings": settings, "service": service, "watchers": [], "plot": [],
                   "pids": {"service": service.pid, "worker": worker.pid,
                            "redis": servers.redis.process.pid,
                            "broker": servers.broker.process.pid}}
        try:
            wait_until_healthy(base, service)
            console.print(f"seeding {args.seed_events:,} events ...")
            results["seed_seconds"] = seed(settings, base, keys["admin"], args.seed_events)
            console.print(f"  applied in {results['seed_seconds']:.1f} s")
            client = redis.Redis.from_url(settings.redis_url)
            results["redis_used_memory_mib_before"] = client.info("memory")["used_memory"] / 2**20
            for name, seconds, hostile_part in (("A", args.honest_seconds, False),
                                                ("B", args.hostile_seconds, True),
                                                ("C", args.after_seconds, False)):
                if seconds <= 0:
                    continue
                console.print(f"phase {name}: honest {args.rate:.0f} req/s for {seconds:.0f} s"
                              + (" beside the hostile clients" if hostile_part else "")
                              + f" ({(time.monotonic() - began) / 60:.1f} min so far)")
                results["phases"].append(run_phase(name, seconds, hostile_part, context))
            console.print("waiting until the honest events are applied ...")
            for watcher in context["watchers"]:
                watcher.join()
            results["redis_used_memory_mib_after"] = client.info("memory")["used_memory"] / 2**20
            results["final_counters"] = counters(base, keys["admin"])
            client.close()
        finally:
            results["service_exit_code_before_stop"] = service.poll()
            results["worker_exit_code_before_stop"] = worker.poll()
            stop_child(service)
            stop_child(worker)
    results["service_log"] = log_problems(workdir / "service.log",
                                          ("ERROR", "Traceback", "Exception", "CRITICAL"))
    results["worker_log"] = log_problems(workdir / "worker.log",
                                         ("ERROR", "Traceback", "stalled", "CRITICAL"))
    results["minutes"] = (time.monotonic() - began) / 60
    table = tables(results)
    results["table_markdown"] = table
    console.rule("results")
    console.print(table, markup=False, highlight=False, soft_wrap=True)
    console.print(f"service log: {results['service_log']['matching']} problem lines; "
                  f"worker log: {results['worker_log']['matching']}; "
                  f"Redis {results['redis_used_memory_mib_before']:.0f} → "
                  f"{results['redis_used_memory_mib_after']:.0f} MiB; "
                  f"{results['minutes']:.1f} min", markup=False, highlight=False)
    plot(results, context["plot"], RESULTS / f"{args.name}.png")
    (RESULTS / f"{args.name}.json").write_text(json.dumps(results, indent=2))
    console.print(f"wrote {RESULTS / args.name}.json and .png; logs in {workdir}")


if __name__ == "__main__":
    main()
