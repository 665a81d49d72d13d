from fastapi import APIRouter

from ..dependencies import (
    Category,
    Count,
    Exclude,
    OptionalUser,
    PublisherDep,
    RecommenderDep,
    SettingsDep,
    excluded,
)
from ..impressions import publish_impressions
from ..recommender import RecommendationList

router = APIRouter(prefix="/v1/trending", tags=["trending"])


@router.get("", response_model=RecommendationList)
async def trending(
    recommender: RecommenderDep, publisher: PublisherDep, settings: SettingsDep,
    n: Count = 10, category: Category = None, exclude: Exclude = None,
    user_id: OptionalUser = None,
) -> RecommendationList:
    """Items with the highest exponentially decayed popularity, overall or in a category."""
    served = await recommender.trending(n, category, excluded(exclude), user_id)
    publish_impressions(publisher, settings, user_id, served)
    return served
