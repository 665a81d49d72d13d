"""Credit that only the service can give. An impression that credits a recommender, an
experiment's variant or the self-tuning blend's weightings decides metrics, experiment
verdicts and what everyone is served next; so it must be one the service published, not
one a holder of a write key made up. The service signs that attribution with a secret kept
in Redis, which no caller sees; the worker and `POST /v1/events` refuse an impression that
claims it unsigned. What an app showed on its own goes in as recommender "unattributed".
"""

import hashlib
import hmac
import secrets
from typing import TypeVar

import orjson
from redis.asyncio import Redis

from .events import UNATTRIBUTED, ImpressionEvent, InvalidRecord
from .keys import RedisKeys
from .reuse import Reused

#: Bytes of the deployment's secret and hex digits of a signature (128 bits).
SECRET_BYTES = 32
SIGNATURE_HEX_DIGITS = 32
#: How long a process keeps the secret before reading it again: after a Redis that lost it
#: makes a new one, every process signs and checks with the same one again within this time.
SECRET_REUSE_SECONDS = 60.0
#: What the signature is over, first: this scheme and its version.
SIGNED_AS = "streamrec impression attribution v1"
E = TypeVar("E")


class AttributionSecret:
    """The deployment's secret: made by whichever process asks first, then shared by all;
    read on first need (a process starts while Redis is away), then every
    `SECRET_REUSE_SECONDS`."""

    def __init__(self, redis: Redis, keys: RedisKeys) -> None:
        self._redis = redis
        self._key = keys.attribution_secret
        self._secret: Reused[bytes] = Reused(SECRET_REUSE_SECONDS)

    async def get(self) -> bytes:
        return await self._secret.get(self._read)

    async def _read(self) -> bytes:
        secret = await self._redis.get(self._key)
        if secret is None:  # the first process, or a Redis that lost it
            await self._redis.set(self._key, secrets.token_hex(SECRET_BYTES), nx=True)
            secret = await self._redis.get(self._key)
        if secret is None:
            raise RuntimeError(f"Redis did not keep {self._key}")
        return secret


def claims_attribution(event: ImpressionEvent) -> bool:
    return (event.recommender != UNATTRIBUTED or event.experiment is not None
            or bool(event.weighting_lists))


def signature(event: ImpressionEvent, secret: bytes) -> str:
    """Over everything the attribution decides (the list, whose it is, who made it) and the
    event's id and time: a copy re-sent as a new event cannot carry it."""
    signed = orjson.dumps([SIGNED_AS, event.event_id, event.timestamp,
                           event.recommendation_id, event.user_id, event.recommender,
                           event.experiment, event.variant, event.item_ids,
                           event.item_variants, event.weighting_lists],
                          option=orjson.OPT_SORT_KEYS)
    return hmac.new(secret, signed, hashlib.sha256).hexdigest()[:SIGNATURE_HEX_DIGITS]


def signed(event: ImpressionEvent, secret: bytes) -> ImpressionEvent:
    return event.model_copy(update={"signature": signature(event, secret)})


def check_attribution(event: E, secret: bytes | None) -> E:
    """`event`, unless it is an impression that claims attribution without the service's
    signature: then InvalidRecord (dead-letter in the worker, 422 over HTTP). With `secret`
    None (a caller's POST: callers never see a signature) every such claim is refused."""
    if (isinstance(event, ImpressionEvent) and claims_attribution(event)
            and (secret is None
                 or not hmac.compare_digest(event.signature or "", signature(event, secret)))):
        raise InvalidRecord(
            "an impression that credits a recommender, an experiment or the blend's "
            "weightings must be one the service published (signed); post what your app "
            f"showed with recommender {UNATTRIBUTED!r} and no experiment or weighting_lists",
            "unsigned_attribution")
    return event
