"""Turns raw Kafka records into validated stream records and dead-letter rejections.

Nothing a producer sends can raise out of here: every record ends up either valid or
rejected with a reason.
"""

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from pydantic import BaseModel

from streamrec.contract import InvalidRecord

from .state_writer import StreamRecord

#: Dead-letter values above this are cut (the broker's default message limit is 1 MB).
DEAD_LETTER_MAX_VALUE_BYTES = 512 * 1024


@dataclass(frozen=True, slots=True)
class RawRecord:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None

    @property
    def source(self) -> str:
        return f"{self.topic}:{self.partition}"


@dataclass(frozen=True, slots=True)
class Rejection:
    raw: RawRecord
    reason: str

    def dead_letter_headers(self) -> list[tuple[str, bytes]]:
        """Where the record came from and why it was rejected; consumers of the dead-letter
        topic can deduplicate on (source topic, partition, offset)."""
        headers = [
            ("streamrec.reason", self.reason.encode()),
            ("streamrec.source.topic", self.raw.topic.encode()),
            ("streamrec.source.partition", str(self.raw.partition).encode()),
            ("streamrec.source.offset", str(self.raw.offset).encode()),
        ]
        if len(self.raw.value or b"") > DEAD_LETTER_MAX_VALUE_BYTES:
            headers.append(("streamrec.truncated_from", str(len(self.raw.value or b"")).encode()))
        return headers

    def dead_letter_value(self) -> bytes:
        return (self.raw.value or b"")[:DEAD_LETTER_MAX_VALUE_BYTES]


def validate_records(
    raws: Iterable[RawRecord], parse: Callable[[bytes], BaseModel]
) -> tuple[list[StreamRecord], list[Rejection]]:
    """All records in stream order (rejected ones with no payload) and the rejections."""
    records: list[StreamRecord] = []
    rejections: list[Rejection] = []
    for raw in raws:
        try:
            if raw.value is None:
                raise InvalidRecord("record has no value")
            payload = parse(raw.value)
        except InvalidRecord as invalid:
            rejections.append(Rejection(raw, invalid.reason))
            payload = None
        except Exception as unexpected:  # a validator bug must not stop the stream
            rejections.append(Rejection(raw, f"could not be validated: {unexpected!r}"))
            payload = None
        records.append(StreamRecord(raw.source, raw.offset, payload))  # type: ignore[arg-type]
    return records, rejections
