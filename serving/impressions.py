"""Closing the loop: every list served to a known user goes back onto the events topic as one
`impression` event carrying the list's recommendation id, in the background."""

import uuid

from streamrec.contract import IMPRESSION, ImpressionEvent, Settings, signed
from streamrec.contract.clock import clock_ms

from .publisher import EventPublisher
from .recommender import RecommendationList


def impression_event(user_id: str, served: RecommendationList, timestamp_ms: int | None = None
                     ) -> ImpressionEvent:
    """Built without validation: every field comes from a validated request or from us.
    Stamped `timestamp_ms` (the offline replay's event time), else now."""
    return ImpressionEvent.model_construct(
        event_id=uuid.uuid4().hex, user_id=user_id, event_type=IMPRESSION,
        item_ids=[item.item_id for item in served.items],
        timestamp=clock_ms(timestamp_ms),
        recommendation_id=served.recommendation_id, recommender=served.recommender,
        weighting_lists=served.weighting_lists, **_attribution(served),
    )


def _attribution(served: RecommendationList) -> dict[str, object]:
    """The experiment fields of the impression: the variant, or each item's (interleaved)."""
    tag = served.experiment
    if tag is None:
        return {"experiment": None, "variant": None, "item_variants": []}
    placed_by = tag.placed_by or {}
    return {"experiment": tag.name, "variant": tag.variant,
            "item_variants": [placed_by[item.item_id] for item in served.items]
            if placed_by else []}


def publish_impressions(publisher: EventPublisher, settings: Settings, user_id: str | None,
                        served: RecommendationList, secret: bytes) -> None:
    """Signed with the deployment's `secret`: the worker credits only lists we served."""
    if user_id is None or not served.items:
        return
    event = signed(impression_event(user_id, served), secret)
    publisher.publish_in_background(
        settings.events_topic, [(user_id.encode(), event.model_dump_json().encode())])
