from fastapi import APIRouter, Request

from streamrec.contract import ItemEvent, parse_item

from ..dependencies import (
    Cataloguer,
    ItemId,
    ListQuery,
    OptionalUser,
    PublisherDep,
    Reader,
    RecommenderDep,
    SettingsDep,
    Shown,
)
from ..ingest import Accepted, body_schema, ingest
from ..openapi import example
from ..recommender import RecommendationList

router = APIRouter(prefix="/v1/items", tags=["items"])


@router.get("/{item_id}/similar", response_model=RecommendationList,
            dependencies=[Reader])
async def similar_items(item_id: ItemId, options: ListQuery, recommender: RecommenderDep,
                        shown: Shown, user_id: OptionalUser) -> RecommendationList:
    """Items most often used together with `item_id`, by normalised co-occurrence."""
    return shown(user_id, await recommender.similar_items(
        item_id, options.n, category=options.category, exclude=options.excluded))


@router.post("", status_code=202, response_model=Accepted, dependencies=[Cataloguer],
             openapi_extra=body_schema(ItemEvent, examples=example("a new item", {
                 "item_id": "item-new-1", "categories": ["c3"], "tags": ["summer"],
                 "title": "Straw hat"})))
async def post_items(request: Request, settings: SettingsDep, publisher: PublisherDep
                     ) -> Accepted:
    """Add or update catalogue entries (categories, tags, availability, title)."""
    return await ingest(request, settings=settings, publisher=publisher,
                        topic=settings.items_topic, parse=lambda raw: parse_item(raw, settings),
                        key_field="item_id", id_field="item_id")
