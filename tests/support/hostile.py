"""A reproducible corpus of records a producer should never send, by kind."""

import json
import random
from collections.abc import Iterator

NOW_MS = 1_764_000_000_000


def valid_event(rng: random.Random, number: int) -> dict[str, object]:
    return {"event_id": f"ok-{number}", "user_id": f"u{rng.randrange(50)}",
            "item_id": f"i{rng.randrange(200)}", "event_type": "view",
            "timestamp": NOW_MS + number}


def _mutations(rng: random.Random, event: dict[str, object]) -> Iterator[tuple[str, bytes]]:
    encoded = json.dumps(event).encode()
    yield "invalid utf-8", encoded[:10] + bytes([0xff, 0xfe, 0xc3]) + encoded[10:]
    yield "truncated json", encoded[: rng.randrange(1, len(encoded) - 1)]
    depth = rng.choice([200, 1000, 5000])
    yield "deeply nested json", b'{"a":' * depth + b"1" + b"}" * depth
    yield "wrong type", json.dumps({**event, "user_id": rng.choice([42, 1.5, True, [], {}])}
                                   ).encode()
    yield "wrong type", json.dumps({**event, "timestamp": rng.choice([[1], {}, "soon"])}).encode()
    missing = rng.choice(["event_id", "user_id", "item_id", "event_type", "timestamp"])
    yield "missing field", json.dumps({k: v for k, v in event.items() if k != missing}).encode()
    yield "extra field", json.dumps({**event, "surprise": 1}).encode()
    yield "unknown event type", json.dumps({**event, "event_type": f"type{rng.randrange(9)}"}
                                           ).encode()
    yield "nan timestamp", encoded.replace(str(event["timestamp"]).encode(), b"NaN")
    yield "negative timestamp", json.dumps({**event, "timestamp": -rng.randrange(1, 10**9)}
                                           ).encode()
    yield "far-future timestamp", json.dumps({**event, "timestamp": 32_503_680_000_000}).encode()
    yield "empty id", json.dumps({**event, rng.choice(["user_id", "item_id"]): ""}).encode()
    control = "".join(chr(rng.randrange(0, 32)) for _ in range(3))
    yield "control characters", json.dumps({**event, "item_id": f"i{control}x"}).encode()
    yield "not an object", json.dumps(rng.choice([[event], "event", 7, None])).encode()


def hostile_corpus(count: int, seed: int = 3, huge: int = 2) -> list[tuple[str, bytes]]:
    """`count` bad records (kind, bytes), `huge` of them carrying a 10 MB string."""
    rng = random.Random(seed)
    corpus: list[tuple[str, bytes]] = []
    while len(corpus) < count - huge:
        corpus.extend(_mutations(rng, valid_event(rng, len(corpus))))
    corpus = corpus[: count - huge]
    for number in range(huge):
        corpus.append(("10 MB string", json.dumps(
            {**valid_event(rng, number), "user_id": "x" * 10_000_000}).encode()))
    rng.shuffle(corpus)
    return corpus
