"""Pseudonymous user ids: with STREAMREC_ID_HMAC_KEY set, every user id is replaced by a keyed
HMAC-SHA256 of it (truncated to 128 bits, URL-safe) where it enters: the event validator both
the service and the worker apply, and the service's URL paths and queries. Callers keep
using their own ids; Redis, the worker's topics as the service writes them, and the logs see
only pseudonyms.

An id that already has a pseudonym's shape is taken as one (the service pseudonymises the
events it publishes, and the worker validates them again). Changing the key changes every
pseudonym: the state learned under the old key is then no one's (it can be erased only by
the old pseudonyms, or left to expire).
"""

import base64
import hashlib
import hmac
import json
import re

PSEUDONYM_PREFIX = "p_"
PSEUDONYM_PATTERN = re.compile(r"^p_[A-Za-z0-9_-]{22}$")
#: Why a user's request is refused where the pseudonym key is not the state's.
OTHER_PSEUDONYM_KEY = (
    "STREAMREC_ID_HMAC_KEY here is not the key the state was learned under: a user's "
    "pseudonym here is not the one their events carried, so this would reach no one (an "
    "erasure would erase no one); use the worker's key")


def pseudonymise(user_id: str, key: bytes | None) -> str:
    """The pseudonym of `user_id` under `key`; the id itself without a key."""
    if key is None or PSEUDONYM_PATTERN.match(user_id):
        return user_id
    digest = hmac.new(key, user_id.encode(), hashlib.sha256).digest()[:16]
    return PSEUDONYM_PREFIX + base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def key_fingerprint(key: bytes | None) -> str:
    """Which key pseudonymises ids ("none" without one), without saying the key: an HMAC of a
    fixed text. It tells a guess of the key no more than any stored pseudonym already does."""
    if key is None:
        return "none"
    return hmac.new(key, b"streamrec pseudonym key fingerprint", hashlib.sha256).hexdigest()[:16]


def learned_under_another_key(recorded: bytes | str | None, fingerprint: str) -> bool:
    """Whether the learning settings recorded with a state (their JSON; None before its first
    batch) name another pseudonym key than the one with `fingerprint`."""
    learned = None if recorded is None else json.loads(recorded).get("id_hmac_key_fingerprint")
    return learned is not None and learned != fingerprint
