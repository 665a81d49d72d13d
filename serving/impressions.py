"""Closing the loop: every list served to a known user goes back onto the events topic as
`impression` events carrying the list's recommendation id, in the background."""

import time
import uuid

from streamrec.contract import IMPRESSION, InteractionEvent, Settings

from .publisher import EventPublisher
from .recommender import RecommendationList


def impression_events(user_id: str, served: RecommendationList) -> list[InteractionEvent]:
    """Built without validation: every field comes from a validated request or from us."""
    now_ms = int(time.time() * 1000)
    return [
        InteractionEvent.model_construct(
            event_id=uuid.uuid4().hex, user_id=user_id, item_id=item.item_id,
            event_type=IMPRESSION, timestamp=now_ms,
            recommendation_id=served.recommendation_id,
            properties={"recommender": served.recommender, "source": item.source,
                        "position": position},
        )
        for position, item in enumerate(served.items)
    ]


def publish_impressions(publisher: EventPublisher, settings: Settings, user_id: str | None,
                        served: RecommendationList) -> None:
    if user_id is None or not served.items:
        return
    publisher.publish_in_background(settings.events_topic, [
        (event.user_id.encode(), event.model_dump_json().encode())
        for event in impression_events(user_id, served)
    ])
