"""Who is calling: API keys with scopes, read from the keys file, and a rate limit per key.

The key comes as `Authorization: Bearer <key>` or `X-API-Key`; `guards.Gate` identifies the
caller before any work (401 when the key is missing or unknown, 429 with Retry-After past
its rate), and a route declares the scope it needs (`Depends(require("read"))`: 403
without). The keys file is re-read when it changes (looked at no more than once a second)
and on SIGHUP, so revoking a key needs no restart. Keys are compared as SHA-256 digests in
constant time and never logged.
"""

import hmac
import logging
import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated

from fastapi import Request, Security
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from pydantic import ValidationError

from streamrec.contract import ApiKey, Scope, key_digest, load_keys
from streamrec.contract.api_keys import SCOPES

from .errors import ApiError

log = logging.getLogger(__name__)

#: The keys file is looked at (stat) at most this often.
RELOAD_CHECK_SECONDS = 1.0

bearer = HTTPBearer(auto_error=False, description="An API key: `Authorization: Bearer <key>`.")
api_key_header = APIKeyHeader(name="X-API-Key", auto_error=False,
                              description="An API key, as an alternative to the bearer.")


@dataclass
class KeyRing:
    path: Path | None  # None: no keys at all
    keys: list[ApiKey] = field(default_factory=list)
    _signature: tuple[int, int] | None = None
    _checked_at: float = -RELOAD_CHECK_SECONDS

    def reload(self) -> None:
        """Read the file again now (SIGHUP); a broken file keeps the keys in force."""
        self._checked_at = time.monotonic()
        if self.path is None:
            return
        try:
            stat = os.stat(self.path)
            signature = (stat.st_mtime_ns, stat.st_size)
            if signature != self._signature:
                self.keys = load_keys(self.path).keys
                self._signature = signature
                log.info("API keys loaded from %s: %s", self.path,
                         ", ".join(k.name for k in self.keys) or "none")
        except FileNotFoundError:
            self.keys, self._signature = [], None
        except (OSError, ValidationError, ValueError) as error:
            log.error("API keys file %s unreadable, keeping the keys in force: %s",
                      self.path, error)

    def find(self, presented: str) -> ApiKey | None:
        if time.monotonic() - self._checked_at >= RELOAD_CHECK_SECONDS:
            self.reload()
        digest = key_digest(presented)
        found = None
        for entry in self.keys:  # every entry compared: the time says nothing about which
            if hmac.compare_digest(entry.sha256, digest):
                found = entry
        return found


@dataclass
class RateLimiter:
    """A token bucket per key: `rate` units of work a second on average (a light request is
    one; see `guards.request_cost`), bursts up to `burst`: a key asking for long lists
    reaches its limit sooner than one asking for short ones. A key with its own rate bursts
    as many seconds of it as the default does of `rate`. A request costing more than the
    burst is taken from a full bucket and leaves it in debt: the key pays its whole cost
    before its next request, whatever the burst."""

    rate: float
    burst: int
    _buckets: dict[str, tuple[float, float]] = field(default_factory=dict)

    def wait_for(self, name: str, cost: int = 1, *, rate: float | None = None) -> float:
        """0 and `cost` tokens taken, or the seconds until there are enough."""
        burst = self.burst if rate is None else self.burst * rate / self.rate
        rate = self.rate if rate is None else rate
        now = time.monotonic()
        tokens, then = self._buckets.get(name, (burst, now))
        tokens = min(burst, tokens + (now - then) * rate)
        needed = min(float(cost), burst)
        if tokens >= needed:
            self._buckets[name] = (tokens - cost, now)
            return 0.0
        self._buckets[name] = (tokens, now)
        return (needed - tokens) / rate


@dataclass(frozen=True)
class Caller:
    name: str
    scopes: frozenset[str]
    rate_per_second: float | None = None  # None: the default rate


#: With STREAMREC_AUTH=disabled every caller is this one, with every scope.
EVERYONE = Caller("anonymous", frozenset(SCOPES))


@dataclass
class Auth:
    keys: KeyRing
    limiter: RateLimiter

    def identify(self, presented: str | None) -> Caller:
        """The caller behind a key; ApiError 401 otherwise."""
        if not presented:
            raise ApiError(401, "send an API key: Authorization: Bearer <key> or X-API-Key",
                           headers={"WWW-Authenticate": "Bearer"})
        entry = self.keys.find(presented)
        if entry is None:
            raise ApiError(401, "unknown API key", headers={"WWW-Authenticate": "Bearer"})
        return Caller(entry.name, frozenset(entry.scopes), entry.rate_per_second)

    def charge(self, caller: Caller, cost: int) -> None:
        """Take `cost` units from the caller's rate; ApiError 429 past it."""
        wait = self.limiter.wait_for(caller.name, cost, rate=caller.rate_per_second)
        if wait:
            raise ApiError(429, f"rate limit of the key {caller.name!r} reached; retry",
                           headers={"Retry-After": str(max(1, round(wait + 0.5)))})


def require(scope: Scope) -> Callable[..., Awaitable[Caller]]:
    """A dependency: the caller (identified by `guards.Gate` before any work), if their key
    has `scope`; 403 otherwise. The security parameters only declare the schemes in the
    OpenAPI document (with `scope` as the role each requires), so the docs page's "Authorize"
    works."""
    async def caller(request: Request,
                     _bearer: Annotated[HTTPAuthorizationCredentials | None,
                                        Security(bearer, scopes=[scope])],
                     _header: Annotated[str | None, Security(api_key_header, scopes=[scope])]
                     ) -> Caller:
        admitted: Caller = request.state.caller
        if scope not in admitted.scopes:
            raise ApiError(403, f"the key {admitted.name!r} does not have the {scope!r} scope")
        return admitted

    return caller
