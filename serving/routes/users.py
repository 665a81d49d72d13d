from fastapi import APIRouter

from ..dependencies import (
    Category,
    Count,
    Exclude,
    PublisherDep,
    RecommenderDep,
    SettingsDep,
    UserId,
    excluded,
)
from ..impressions import publish_impressions
from ..recommender import RecommendationList

router = APIRouter(prefix="/v1/users", tags=["users"])


@router.get("/{user_id}/recommendations", response_model=RecommendationList)
async def recommendations_for_user(
    user_id: UserId, recommender: RecommenderDep, publisher: PublisherDep,
    settings: SettingsDep, n: Count = 10, category: Category = None, exclude: Exclude = None,
) -> RecommendationList:
    """Personalised: items that co-occur with what the user did most recently, topped up from
    trending; the user's seen items, unavailable items and `exclude` never appear."""
    served = await recommender.for_user(user_id, n, category, excluded(exclude))
    publish_impressions(publisher, settings, user_id, served)
    return served
