"""The one clock: milliseconds since the epoch, as events carry them."""

import time


def clock_ms(given: int | None = None) -> int:
    """`given` when a caller judges as of another time (replays, tests), else the wall clock."""
    return int(time.time() * 1000) if given is None else given
