from fastapi import APIRouter, Request

from streamrec.contract import ImpressionEvent, InteractionEvent, parse_event

from ..dependencies import PublisherDep, SettingsDep, Writer
from ..ingest import Accepted, body_schema, ingest, server_assigned_fields

router = APIRouter(prefix="/v1/events", tags=["events"])


@router.post("", status_code=202, response_model=Accepted, dependencies=[Writer],
             openapi_extra=body_schema(InteractionEvent, ImpressionEvent,
                                       optional=("event_id", "timestamp")))
async def post_events(request: Request, settings: SettingsDep, publisher: PublisherDep
                      ) -> Accepted:
    """One event or a list, produced to the events topic keyed by user. `event_id` and
    `timestamp` default to a new UUID and the time of receipt."""
    return await ingest(request, settings=settings, publisher=publisher,
                        topic=settings.events_topic, parse=lambda raw: parse_event(raw, settings),
                        key_field="user_id", id_field="event_id",
                        defaults=server_assigned_fields)
