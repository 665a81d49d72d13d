"""Turns raw Kafka records into validated stream records and dead-letter rejections.

Nothing a producer sends can raise out of here: every record ends up either valid or
rejected with a reason.
"""

import hashlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from pydantic import BaseModel

from streamrec.contract import LOG_ID_HEADER, InvalidRecord

from .state_writer import LogEpoch, StreamRecord

#: A dead-letter copy always fits the broker's default message limit (1 MB): the value, the
#: key and the reason are cut to these sizes; headers keep the original sizes and digests.
DEAD_LETTER_MAX_VALUE_BYTES = 512 * 1024
DEAD_LETTER_MAX_KEY_BYTES = 1024
DEAD_LETTER_MAX_REASON_BYTES = 4096
#: Characters of a reason the dashboard's summary keeps.
SUMMARY_REASON_CHARS = 300


@dataclass(frozen=True, slots=True)
class RawRecord:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...] = ()

    @property
    def source(self) -> str:
        return f"{self.topic}:{self.partition}"


@dataclass(frozen=True, slots=True)
class Rejection:
    raw: RawRecord
    reason: str
    kind: str  # what went wrong, from a small fixed set (the worker's metric label)

    def dead_letter_headers(self) -> list[tuple[str, bytes]]:
        """Where the record came from and why it was rejected; consumers of the dead-letter
        topic can deduplicate on (source topic, partition, offset). A cut key or value keeps
        its original size and SHA-256 in `streamrec.{key,value}.{size,sha256}`."""
        headers = [
            ("streamrec.reason", self.reason.encode()[:DEAD_LETTER_MAX_REASON_BYTES]),
            ("streamrec.source.topic", self.raw.topic.encode()[:DEAD_LETTER_MAX_KEY_BYTES]),
            ("streamrec.source.partition", str(self.raw.partition).encode()),
            ("streamrec.source.offset", str(self.raw.offset).encode()),
        ]
        for name, original, limit in (("key", self.raw.key, DEAD_LETTER_MAX_KEY_BYTES),
                                      ("value", self.raw.value, DEAD_LETTER_MAX_VALUE_BYTES)):
            if original is not None and len(original) > limit:
                headers += [(f"streamrec.{name}.size", str(len(original)).encode()),
                            (f"streamrec.{name}.sha256",
                             hashlib.sha256(original).hexdigest().encode())]
        return headers

    def summary(self, at_ms: int) -> dict[str, object]:
        """What the dashboard lists of a dead letter (the reason's start)."""
        return {"at_ms": at_ms, "kind": self.kind, "source": self.raw.source,
                "offset": self.raw.offset, "reason": self.reason[:SUMMARY_REASON_CHARS]}

    def dead_letter_key(self) -> bytes | None:
        return None if self.raw.key is None else self.raw.key[:DEAD_LETTER_MAX_KEY_BYTES]

    def dead_letter_value(self) -> bytes:
        return (self.raw.value or b"")[:DEAD_LETTER_MAX_VALUE_BYTES]


def validate_records(
    raws: Iterable[RawRecord], parse: Callable[[bytes], BaseModel]
) -> tuple[list[StreamRecord], list[Rejection]]:
    """All records in stream order (rejected ones with no payload) and the rejections."""
    records: list[StreamRecord] = []
    rejections: list[Rejection] = []
    for raw in raws:
        log_id = dict(raw.headers).get(LOG_ID_HEADER)
        if log_id and not raw.value:
            records.append(StreamRecord(raw.source, raw.offset,
                                        LogEpoch(log_id.decode(errors="replace"))))
            continue
        try:
            if raw.value is None:
                raise InvalidRecord("record has no value", "no_value")
            payload = parse(raw.value)
        except InvalidRecord as invalid:
            rejections.append(Rejection(raw, invalid.reason, invalid.kind))
            payload = None
        except Exception as unexpected:  # a validator bug must not stop the stream
            rejections.append(Rejection(raw, f"could not be validated: {unexpected!r}",
                                        "validator_error"))
            payload = None
        records.append(StreamRecord(raw.source, raw.offset, payload))  # type: ignore[arg-type]
    return records, rejections
