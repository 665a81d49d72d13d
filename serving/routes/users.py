from fastapi import APIRouter

from ..dependencies import ListQuery, RecommenderDep, Shown, UserId
from ..recommender import RecommendationList

router = APIRouter(prefix="/v1/users", tags=["users"])


@router.get("/{user_id}/recommendations", response_model=RecommendationList)
async def recommendations_for_user(user_id: UserId, options: ListQuery,
                                   recommender: RecommenderDep, shown: Shown
                                   ) -> RecommendationList:
    """Personalised: items that co-occur with what the user did most recently, topped up from
    trending; the user's seen items, unavailable items and `exclude` never appear."""
    return shown(user_id, await recommender.for_user(user_id, options.n, options.category,
                                                     options.excluded))
