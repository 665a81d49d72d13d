"""Forward decay (Cormode et al., 2009): how decayed scores are stored and read.

A weight w seen at time t is stored as w * 2^((t - anchor) / half_life). Sums of such
terms rank exactly like the exponentially decayed sums at any later time, so the worker
only ever adds (ZINCRBY) and never rewrites old scores. Reading the decayed value at time
`now` multiplies by 2^(-(now - anchor) / half_life). `stream_app/lua/forward_decay.lua`
applies the same formula inside Redis (a test checks both agree).

Stored magnitudes grow with time past the anchor, so interactions are learned only up to a
horizon (`DECAY_HALF_LIVES_AHEAD` half-lives after it; those stamped later are refused with
the reason), and the anchor may not lie in the future (reading a score multiplies by
2^((anchor - now) / half_life)).
"""

from datetime import UTC, datetime

DAY_MS = 86_400_000

#: How many half-lives after the anchor an event may be stamped. Its stored weight is then at
#: most 2^200 times its weight, so the sums of such weights (below 2^50 times that), cosine's
#: product of two of them and a count similarity raised to the power 4 (the bound of
#: `similarity_exponent`) all stay below 2^1024, where a double overflows: past it, scores
#: became inf and an erasure's subtraction NaN, which Redis refuses (the worker then stalled).
DECAY_HALF_LIVES_AHEAD = 200
#: 9999-12-31T23:59:59.999Z: the latest time a horizon is given as (datetime's limit).
LATEST_MS = 253_402_300_799_999


def half_life_ms(days: float) -> float:
    return days * DAY_MS


def forward_decayed(weight: float, event_time_ms: int, anchor_ms: int, half_life: float) -> float:
    """The stored contribution of `weight` observed at `event_time_ms`."""
    return weight * 2.0 ** ((event_time_ms - anchor_ms) / half_life)


def value_at(stored: float, now_ms: int, anchor_ms: int, half_life: float) -> float:
    """The exponentially decayed value, as of `now_ms`, of a forward-decayed sum."""
    return stored * 2.0 ** (-(now_ms - anchor_ms) / half_life)


def decay_horizon_ms(anchor_ms: int, half_life: float) -> int:
    """The latest event time whose forward-decayed weight stays in range (see above)."""
    return int(min(anchor_ms + DECAY_HALF_LIVES_AHEAD * half_life, LATEST_MS))


def utc_text(epoch_ms: int) -> str:
    """An epoch-milliseconds time for people, e.g. 2040-06-05T00:00:00Z."""
    return datetime.fromtimestamp(epoch_ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
