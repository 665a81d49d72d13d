"""A value a process reads again only after a while: what most requests ask for and may see
a little late (the running experiment, the global watermark, the attribution secret)."""

import time
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class Reused(Generic[T]):
    """The last value `get` read, until it is `seconds` old (or forgotten)."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._read: tuple[float, T] | None = None  # (when, value)

    async def get(self, read: Callable[[], Awaitable[T]]) -> T:
        now = time.monotonic()
        if self._read is None or now - self._read[0] >= self.seconds:
            self._read = (now, await read())
        return self._read[1]

    def forget(self) -> None:
        """The next `get` reads again (after this process changed the value)."""
        self._read = None
