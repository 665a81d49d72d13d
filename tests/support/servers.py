"""The real servers a test session runs against."""

import uuid
from dataclasses import dataclass
from pathlib import Path

import httpx

from streamrec.contract import Settings


@dataclass(frozen=True)
class Servers:
    bootstrap_servers: str
    redis_url: str
    workdir: Path

    def settings(self, **overrides: object) -> Settings:
        """Settings whose keys, topics and consumer group no other test uses; auth disabled
        unless a test asks for it (tests/system/test_access.py does); a user's interactions
        shared from the first (hand-made streams are short), except where a test asks for
        the new-user rule (tests/integration/test_shilling.py)."""
        tag = uuid.uuid4().hex[:10]
        values: dict[str, object] = {
            "kafka_bootstrap_servers": self.bootstrap_servers, "redis_url": self.redis_url,
            "key_prefix": f"t{tag}", "events_topic": f"events-{tag}",
            "items_topic": f"items-{tag}", "dead_letter_topic": f"dead-letter-{tag}",
            "consumer_group": f"workers-{tag}", "topic_partitions": 4, "auth": "disabled",
            "shared_after_items": 1,
        }
        return Settings(**{**values, **overrides})


@dataclass
class Secured:
    """A running worker and service that require API keys: the keys by name."""

    settings: Settings
    base: str
    keys: dict[str, str]  # name -> key
    logs: Path

    def call(self, method: str, path: str, key: str | None = None, *,
             header: str = "Authorization", **kwargs: object) -> httpx.Response:
        headers = {}
        if key is not None:
            headers[header] = f"Bearer {self.keys[key]}" if header == "Authorization" else (
                self.keys[key])
        return httpx.request(method, f"{self.base}{path}", headers=headers, timeout=10,
                             **kwargs)  # type: ignore[arg-type]
