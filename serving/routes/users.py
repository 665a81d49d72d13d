from typing import Annotated

from fastapi import APIRouter, Query

from streamrec.contract import MAX_LIST_LENGTH

from ..dependencies import ListQuery, ProfilesDep, Reader, RecommenderDep, Shown, UserId, Writer
from ..profiles import Preferences
from ..recommender import RecommendationList

router = APIRouter(prefix="/v1/users", tags=["users"])


@router.get("/{user_id}/recommendations", response_model=RecommendationList,
            dependencies=[Reader])
async def recommendations_for_user(
    user_id: UserId, options: ListQuery, recommender: RecommenderDep, shown: Shown,
    max_per_category: Annotated[int | None, Query(
        ge=1, le=MAX_LIST_LENGTH, description="Diversity: at most this many items of one "
        "category (default: STREAMREC_MAX_PER_CATEGORY, unset means no cap).")] = None,
) -> RecommendationList:
    """Personalised: items that co-occur with what the user did most recently, topped up from
    trending in the categories the user likes (stated or learned), then trending overall;
    the user's seen items, unavailable items and `exclude` never appear."""
    return shown(user_id, await recommender.for_user(
        user_id, options.n, category=options.category, exclude=options.excluded,
        max_per_category=max_per_category))


@router.put("/{user_id}/preferences", response_model=Preferences,
            dependencies=[Writer])
async def put_preferences(user_id: UserId, preferences: Preferences, profiles: ProfilesDep
                          ) -> Preferences:
    """Replace the categories the user likes: a new user gets trending within them until
    their own behaviour says more. Takes effect on the next request."""
    return await profiles.save(user_id, preferences)


@router.get("/{user_id}/preferences", response_model=Preferences,
            dependencies=[Reader])
async def get_preferences(user_id: UserId, profiles: ProfilesDep) -> Preferences:
    return await profiles.load(user_id)
