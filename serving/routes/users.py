import asyncio
import time
from typing import Annotated

from fastapi import APIRouter, Body, Query, Response

from streamrec.contract import MAX_LIST_LENGTH, forget_request, half_life_ms

from ..dependencies import (
    Admin,
    ExperimentsDep,
    ListQuery,
    ProfilesDep,
    PublisherDep,
    Reader,
    RecommenderDep,
    SettingsDep,
    Shown,
    UserId,
    Writer,
)
from ..openapi import example
from ..portrait import Portrait, portrait
from ..profiles import Preferences
from ..recommender import RecommendationList
from .erasures import Erasure

router = APIRouter(prefix="/v1/users", tags=["users"])


@router.get("/{user_id}/recommendations", response_model=RecommendationList,
            dependencies=[Reader])
async def recommendations_for_user(
    user_id: UserId, options: ListQuery, recommender: RecommenderDep, shown: Shown,
    experiments: ExperimentsDep, max_per_category: Annotated[int | None, Query(
        ge=1, le=MAX_LIST_LENGTH, description="Diversity: at most this many items of one "
        "category in the whole list, top-up included, so it may be shorter than n (default: "
        "STREAMREC_MAX_PER_CATEGORY, unset means no cap).",
        openapi_examples=example("two per category", 2))] = None,
) -> RecommendationList:
    """Personalised: items that co-occur with what the user did most recently, topped up from
    trending in the categories the user likes (stated or learned), then trending overall;
    the user's seen items, unavailable items and `exclude` never appear. While an experiment
    runs, a user in it gets their variant's list, and `experiment` names it."""
    return shown(user_id, await experiments.for_user(
        recommender, user_id, options.n, category=options.category, exclude=options.excluded,
        max_per_category=max_per_category))


@router.put("/{user_id}/preferences", response_model=Preferences,
            dependencies=[Writer])
async def put_preferences(user_id: UserId, preferences: Annotated[Preferences, Body(
        openapi_examples=example("likes c2", {"categories": ["c2"]}))],
                          profiles: ProfilesDep) -> Preferences:
    """Replace the categories the user likes: a new user gets trending within them until
    their own behaviour says more. Takes effect on the next request."""
    return await profiles.save(user_id, preferences)


@router.get("/{user_id}/preferences", response_model=Preferences,
            dependencies=[Reader])
async def get_preferences(user_id: UserId, profiles: ProfilesDep) -> Preferences:
    return await profiles.load(user_id)


@router.delete("/{user_id}", response_model=Erasure, dependencies=[Admin],
               responses={202: {"model": Erasure, "description": "Accepted, still running."}})
async def forget_user(user_id: UserId, publisher: PublisherDep, settings: SettingsDep,
                      recommender: RecommenderDep, response: Response) -> Erasure:
    """Erase the user: their contributions to every shared ranking, count and row are taken
    back out, exactly, and their own state, served lists and preferences deleted; their
    events stamped before now that arrive later are dropped. Goes through the events topic
    (in order with the user's events) and answers once the worker has done it (or 202)."""
    request = forget_request(user_id)
    await publisher.publish(settings.events_topic,
                            [(user_id.encode(), request.model_dump_json().encode())])
    deadline = time.monotonic() + settings.erasure_wait_seconds
    while time.monotonic() < deadline:
        audit = await recommender.reader.erasure(request.event_id)
        if audit is not None:
            return Erasure(status="done", **audit)
        await asyncio.sleep(0.05)
    response.status_code = 202
    return Erasure(erasure_id=request.event_id, status="pending", user=request.pseudonym,
                   requested_at_ms=request.timestamp)


@router.get("/{user_id}/profile", response_model=Portrait, dependencies=[Admin])
async def profile(user_id: UserId, recommender: RecommenderDep, settings: SettingsDep
                  ) -> Portrait:
    """The user as the service sees them: recent items with type and time, top categories
    with decayed affinity, stated preferences, event counts by type, first and last seen,
    lists shown and acted on. Also the answer to a person asking to see their data."""
    return await portrait(recommender.reader.redis, recommender.reader.keys, user_id,
                          anchor_ms=settings.decay_anchor_ms,
                          affinity_half_life_ms=half_life_ms(settings.affinity_half_life_days))
