"""Reading the whole Redis state of one key prefix, to compare runs."""

import math
from typing import Any

from redis.asyncio import Redis

#: Wall-clock and delivery bookkeeping that legitimately differs between equivalent runs.
RUN_DEPENDENT_FIELDS = {"applied_at_ms", "duplicates_skipped"}
#: Sets whose scores are wall-clock times (when each event id was applied): members compared.
RUN_DEPENDENT_SCORES = (":event_ids",)
#: The dashboard's latest dead-letter reasons: stamped with wall-clock time, in arrival order;
#: the attribution secret: random, made by the first process that needs it.
RUN_DEPENDENT_KEYS = (":dead_letters", ":attribution_secret")


async def dump_state(redis: Redis, prefix: str) -> dict[str, Any]:
    state: dict[str, Any] = {}
    async for raw_key in redis.scan_iter(match=f"{prefix}:*", count=1000):
        key = raw_key.decode()
        if key.endswith(RUN_DEPENDENT_KEYS):
            continue
        kind = (await redis.type(raw_key)).decode()
        if kind == "zset" and key.endswith(RUN_DEPENDENT_SCORES):
            state[key] = {m.decode() for m in await redis.zrange(raw_key, 0, -1)}
        elif kind == "zset":
            state[key] = {m.decode(): s for m, s in await redis.zrange(raw_key, 0, -1,
                                                                       withscores=True)}
        elif kind == "hash":
            state[key] = {f.decode(): v.decode() for f, v in (await redis.hgetall(raw_key)).items()
                          if f.decode() not in RUN_DEPENDENT_FIELDS}
        elif kind == "list":
            state[key] = [v.decode() for v in await redis.lrange(raw_key, 0, -1)]
        elif kind == "set":
            state[key] = {m.decode() for m in await redis.smembers(raw_key)}
        else:
            state[key] = (await redis.get(raw_key)).decode()
    return state


def differences(left: dict[str, Any], right: dict[str, Any], rel: float = 1e-9) -> list[str]:
    """Human-readable differences; floats equal within `rel` relative tolerance."""
    found = []
    for key in sorted(set(left) | set(right)):
        a, b = left.get(key), right.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            for field in sorted(set(a) | set(b)):
                x, y = a.get(field), b.get(field)
                if not _close(x, y, rel):
                    found.append(f"{key}[{field}]: {x!r} != {y!r}")
        elif a != b:
            found.append(f"{key}: {a!r} != {b!r}")
    return found


def _close(x: Any, y: Any, rel: float) -> bool:
    """Floats, and hash fields holding floats (HINCRBYFLOAT sums), within `rel`: decayed
    counts summed from several partitions add in arrival order, which rounds differently."""
    x, y = _number(x), _number(y)
    if isinstance(x, float) and isinstance(y, float):
        return math.isclose(x, y, rel_tol=rel)
    return x == y


def _number(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    return value
