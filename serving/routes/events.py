from fastapi import APIRouter, Request
from pydantic import BaseModel

from streamrec.contract import (
    ForgetRequest,
    ImpressionEvent,
    InteractionEvent,
    InvalidRecord,
    check_attribution,
    parse_event,
)

from ..dependencies import PublisherDep, SamePseudonymKey, SettingsDep, Writer
from ..ingest import Accepted, body_schema, ingest, server_assigned_fields
from ..openapi import example

router = APIRouter(prefix="/v1/events", tags=["events"])


def no_erasure(event: BaseModel) -> BaseModel:
    """Erasing a user takes the admin scope: DELETE /v1/users/{id}, not an event."""
    if isinstance(event, ForgetRequest):
        raise InvalidRecord("event_type: 'forget' is DELETE /v1/users/{user_id} (admin scope)")
    return event


@router.post("", status_code=202, response_model=Accepted,
             dependencies=[Writer, SamePseudonymKey],
             openapi_extra=body_schema(
                 InteractionEvent, ImpressionEvent, optional=("event_id", "timestamp"),
                 examples=example("an add to cart, stamped on receipt", [
                     {"user_id": "user-7", "item_id": "item-c3-5",
                      "event_type": "add_to_cart"}])))
async def post_events(request: Request, settings: SettingsDep, publisher: PublisherDep
                      ) -> Accepted:
    """One event or a list, produced to the events topic keyed by user. `event_id` and
    `timestamp` default to a new UUID and the time of receipt."""
    return await ingest(request, settings=settings, publisher=publisher,
                        topic=settings.events_topic, parse=lambda raw: check_attribution(
                            no_erasure(parse_event(raw, settings)), None),
                        key_field="user_id", id_field="event_id",
                        defaults=server_assigned_fields)
