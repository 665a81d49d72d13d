"""POSTed records: read with a size limit, validated by the contract's own validator (the one
the worker applies), produced to Kafka. All-or-nothing: one invalid record rejects the
request and nothing is published."""

import uuid
from collections.abc import Callable
from typing import Any

import orjson
from fastapi import Request
from pydantic import BaseModel

from streamrec.contract import InvalidRecord, Settings
from streamrec.contract.clock import clock_ms

from .errors import ApiError
from .publisher import EventPublisher


class Accepted(BaseModel):
    accepted: int
    ids: list[str]


async def read_records(request: Request, settings: Settings) -> list[Any]:
    """The JSON body as a list of records (a single object counts as one). Its size is
    bounded before it is read, by `guards.BodyGuard` (413 past STREAMREC_MAX_REQUEST_BYTES,
    declared or streamed)."""
    body = await request.body()
    try:
        decoded = orjson.loads(body)
    except orjson.JSONDecodeError as error:
        raise ApiError(422, f"request body is not valid JSON: {error}") from None
    records = decoded if isinstance(decoded, list) else [decoded]
    if not records:
        raise ApiError(422, "send one record or a non-empty list of records")
    if len(records) > settings.max_events_per_request:
        raise ApiError(413, f"{len(records)} records in one request; the limit is "
                            f"{settings.max_events_per_request}")
    return records


def validate_all(records: list[Any], parse: Callable[[bytes], BaseModel],
                 defaults: Callable[[], dict[str, Any]]) -> list[BaseModel]:
    valid, problems = [], []
    for index, record in enumerate(records):
        try:
            if not isinstance(record, dict):
                raise InvalidRecord("expected a JSON object")
            valid.append(parse(orjson.dumps({**defaults(), **record})))
        except InvalidRecord as invalid:
            problems.append(f"[{index}] {invalid.reason}")
        except (TypeError, orjson.JSONEncodeError) as error:
            problems.append(f"[{index}] cannot be encoded: {error}")
    if problems:
        raise ApiError(422, "invalid records; nothing was accepted", problems)
    return valid


def server_assigned_fields() -> dict[str, Any]:
    """event_id and timestamp for events posted without them."""
    return {"event_id": uuid.uuid4().hex, "timestamp": clock_ms()}


async def ingest(request: Request, *, settings: Settings, publisher: EventPublisher,
                 topic: str, parse: Callable[[bytes], BaseModel], key_field: str,
                 id_field: str, defaults: Callable[[], dict[str, Any]] = dict) -> Accepted:
    """Read, validate all (all-or-nothing) and produce to `topic` keyed by `key_field`;
    answers the `id_field` of each record."""
    records = validate_all(await read_records(request, settings), parse, defaults)
    await publisher.publish(topic, [
        (getattr(r, key_field).encode(), r.model_dump_json().encode()) for r in records
    ])
    return Accepted(accepted=len(records), ids=[getattr(r, id_field) for r in records])


def body_schema(*models: type[BaseModel], examples: dict[str, dict[str, Any]],
                optional: tuple[str, ...] = ()) -> dict[str, Any]:
    """OpenAPI request body: one record or a list (of any of `models`), as the contract
    validates it, with `examples` (`openapi.example`); `optional` fields are filled in by
    the service."""
    variants = []
    for model in models:
        variant = model.model_json_schema()
        variant["required"] = [f for f in variant.get("required", []) if f not in optional]
        variants.append(variant)
    schema = variants[0] if len(variants) == 1 else {"anyOf": variants}
    one_or_many = {"anyOf": [schema, {"type": "array", "items": schema, "minItems": 1}]}
    return {"requestBody": {"required": True, "content": {"application/json": {
        "schema": one_or_many, "examples": examples}}}}
