from fastapi import APIRouter

from ..dependencies import ListQuery, OptionalUser, Reader, RecommenderDep, Shown
from ..recommender import RecommendationList

router = APIRouter(prefix="/v1/trending", tags=["trending"])


@router.get("", response_model=RecommendationList, dependencies=[Reader])
async def trending(options: ListQuery, recommender: RecommenderDep, shown: Shown,
                   user_id: OptionalUser) -> RecommendationList:
    """Items with the highest exponentially decayed popularity, overall or in a category."""
    return shown(user_id, await recommender.trending(
        options.n, category=options.category, exclude=options.excluded, user_id=user_id))
