"""API keys: who may call the service, and for what. The file format that `streamrec keys`
writes and the service reads.

The file (STREAMREC_API_KEYS_FILE) holds no key, only each key's SHA-256 with a name and its
scopes, so a leaked file or backup grants nothing. A key is 32 random bytes, URL-safe, shown
once when it is created. Keys are long and random, so an unsalted SHA-256 is enough: nothing
can be guessed from it that a brute force could reach.
"""

import hashlib
import json
import os
import secrets
import tempfile
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, PositiveFloat

Scope = Literal["read", "write", "catalogue", "admin"]
SCOPES: tuple[Scope, ...] = ("read", "write", "catalogue", "admin")
#: Printed before every key, so a leaked one is recognisable in code and logs scanners.
KEY_PREFIX = "sr_"


class ApiKey(BaseModel):
    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    scopes: list[Scope] = Field(min_length=1)
    #: Units of work a second for this key (None: STREAMREC_RATE_LIMIT_PER_SECOND), e.g. a
    #: backend that asks for every visitor of a site.
    rate_per_second: PositiveFloat | None = None


class ApiKeys(BaseModel):
    keys: list[ApiKey] = Field(default_factory=list)


def key_digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def load_keys(path: Path) -> ApiKeys:
    """The keys in `path`; none when the file does not exist yet."""
    if not path.exists():
        return ApiKeys()
    return ApiKeys.model_validate_json(path.read_bytes())


def save_keys(path: Path, keys: ApiKeys) -> None:
    """Replace the file atomically (a reader never sees half of it), readable by its owner."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(handle, "w") as file:
        json.dump(keys.model_dump(), file, indent=2)
    os.chmod(temporary, 0o600)
    os.replace(temporary, path)


def create_key(path: Path, name: str, scopes: list[Scope], *,
               rate_per_second: float | None = None) -> str:
    """Add a new key named `name` to the file and return it (it is stored only hashed)."""
    unknown = sorted(set(scopes) - set(SCOPES))
    if unknown or not scopes:
        raise ValueError(f"unknown scopes {unknown}; choose from {', '.join(SCOPES)}")
    keys = load_keys(path)
    if any(entry.name == name for entry in keys.keys):
        raise ValueError(f"a key named {name!r} exists; revoke it first or pick another name")
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    keys.keys.append(ApiKey(name=name, sha256=key_digest(key),
                            scopes=sorted(set(scopes), key=SCOPES.index),
                            rate_per_second=rate_per_second))
    save_keys(path, keys)
    return key


def revoke_key(path: Path, name: str) -> bool:
    """Remove the key named `name`; whether there was one."""
    keys = load_keys(path)
    kept = [entry for entry in keys.keys if entry.name != name]
    if len(kept) == len(keys.keys):
        return False
    save_keys(path, ApiKeys(keys=kept))
    return True
