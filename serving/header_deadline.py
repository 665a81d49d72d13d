"""A deadline for request headers, which uvicorn reads without one: a client that sends its
request line and headers a byte at a time would hold its connection forever (slowloris).
The deadline runs from the connection, and again from each response on a kept-alive one,
until the headers are complete; past it the client gets a 408 and the connection closes."""

import asyncio

import orjson
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from .errors import error_body

#: What uvicorn is told to use (by name: several service processes import it themselves).
PROTOCOL = "serving.header_deadline:HeaderDeadlineProtocol"


class HeaderDeadlineProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with a header deadline (`set_header_deadline`)."""

    seconds: float = 10.0
    timed_out: bytes = b""
    _deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def on_headers_complete(self) -> None:
        self._disarm()
        super().on_headers_complete()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing():
            self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _arm(self) -> None:
        self._disarm()
        self._deadline = self.loop.call_later(self.seconds, self._too_slow)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _too_slow(self) -> None:
        if not self.transport.is_closing():
            self.transport.write(self.timed_out)
            self.transport.close()


def set_header_deadline(seconds: float) -> None:
    """The deadline of this process's connections (each service process sets its own)."""
    body = orjson.dumps(error_body(f"the request headers took longer than {seconds:g}s"))
    HeaderDeadlineProtocol.seconds = seconds
    HeaderDeadlineProtocol.timed_out = (
        b"HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\n"
        b"connection: close\r\ncontent-length: %d\r\n\r\n%s" % (len(body), body))
