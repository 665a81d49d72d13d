"""Forward decay (Cormode et al., 2009): how decayed scores are stored and read.

A weight w seen at time t is stored as w * 2^((t - anchor) / half_life). Sums of such
terms rank exactly like the exponentially decayed sums at any later time, so the worker
only ever adds (ZINCRBY) and never rewrites old scores. Reading the decayed value at time
`now` multiplies by 2^(-(now - anchor) / half_life). Stored magnitudes stay finite as long
as |t - anchor| is below ~1000 half-lives. `stream_app/lua/forward_decay.lua` applies the
same formula inside Redis (a test checks both agree).
"""

DAY_MS = 86_400_000


def half_life_ms(days: float) -> float:
    return days * DAY_MS


def forward_decayed(weight: float, event_time_ms: int, anchor_ms: int, half_life: float) -> float:
    """The stored contribution of `weight` observed at `event_time_ms`."""
    return weight * 2.0 ** ((event_time_ms - anchor_ms) / half_life)


def value_at(stored: float, now_ms: int, anchor_ms: int, half_life: float) -> float:
    """The exponentially decayed value, as of `now_ms`, of a forward-decayed sum."""
    return stored * 2.0 ** (-(now_ms - anchor_ms) / half_life)
