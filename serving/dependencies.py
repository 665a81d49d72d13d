"""What routes receive by injection; built once per process in `serving.app.lifespan`.

Every dependency is a coroutine function: FastAPI runs a plain function (or a class) in a
thread pool, a thread hop per dependency per request."""

from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Path, Query, Request
from pydantic import StringConstraints

from streamrec.contract import (
    DEFAULT_LIST_LENGTH,
    MAX_LIST_LENGTH,
    OTHER_PSEUDONYM_KEY,
    Identifier,
    Label,
    Settings,
    pseudonymise,
)

from .auth import require
from .dashboard import DashboardSeries
from .errors import ApiError
from .experiments import Experiments
from .impressions import publish_impressions
from .openapi import example
from .profiles import Profiles
from .publisher import EventPublisher
from .recommender import RecommendationList, Recommender


async def _settings(request: Request) -> Settings:
    return request.app.state.settings


async def _recommender(request: Request) -> Recommender:
    return request.app.state.recommender


async def _publisher(request: Request) -> EventPublisher:
    return request.app.state.publisher


async def _profiles(request: Request) -> Profiles:
    return request.app.state.profiles


async def _dashboard(request: Request) -> DashboardSeries:
    return request.app.state.dashboard
async def _experiments(request: Request) -> Experiments:
    return request.app.state.experiments


SettingsDep = Annotated[Settings, Depends(_settings)]
RecommenderDep = Annotated[Recommender, Depends(_recommender)]
PublisherDep = Annotated[EventPublisher, Depends(_publisher)]
ProfilesDep = Annotated[Profiles, Depends(_profiles)]
DashboardDep = Annotated[DashboardSeries, Depends(_dashboard)]
ExperimentsDep = Annotated[Experiments, Depends(_experiments)]


async def same_pseudonym_key(request: Request) -> None:
    """503 unless this process pseudonymises ids with the key the state was learned under:
    with another, what it reads or writes for a user would be another (no one's) state."""
    settings = request.app.state.settings
    if await request.app.state.recommender.reader.learned_under_other_pseudonym_key(
            settings.id_hmac_key_fingerprint):
        raise ApiError(503, OTHER_PSEUDONYM_KEY)


async def _user_id(request: Request, user_id: Annotated[Identifier, Path(
        openapi_examples=example("a demo shopper", "user-7"))]) -> str:
    await same_pseudonym_key(request)
    return pseudonymise(user_id, request.app.state.settings.id_key)


async def _optional_user(request: Request, user_id: Annotated[Identifier | None, Query(
        description="Who is shown the list: filters their seen items, records impressions "
        "(with the write scope).", openapi_examples=example("a demo shopper", "user-7"))
        ] = None) -> str | None:
    if user_id is None:
        return None
    await same_pseudonym_key(request)
    return pseudonymise(user_id, request.app.state.settings.id_key)


#: A user id from the path or the query, as the service stores it (its pseudonym with
#: STREAMREC_ID_HMAC_KEY set).
UserId = Annotated[str, Depends(_user_id)]
OptionalUser = Annotated[str | None, Depends(_optional_user)]
ItemId = Annotated[Identifier, Path(openapi_examples=example("a demo item", "item-c3-1"))]


#: `exclude` parameters one request may repeat (each may hold many comma-separated ids), and
#: the ids they may hold in all (each is sent to the ranking script and looked up there).
MAX_EXCLUDE_VALUES = 1000
MAX_EXCLUDED_IDS = 1000


@dataclass(frozen=True, slots=True)
class ListOptions:
    """Query parameters every list endpoint takes."""

    n: int
    category: str | None
    excluded: frozenset[str]


async def _list_options(
    n: Annotated[int, Query(ge=1, le=MAX_LIST_LENGTH, description="How many items to return.",
                            openapi_examples=example("two items", 2))] = DEFAULT_LIST_LENGTH,
    category: Annotated[Label | None, Query(
        description="Only this category.", openapi_examples=example("a demo category", "c3"))
    ] = None,
    exclude: Annotated[
        list[Annotated[str, StringConstraints(max_length=65536)]] | None,
        Query(max_length=MAX_EXCLUDE_VALUES, description="Item ids never to return: repeat "
              "the parameter (`exclude=a&exclude=b`), separate ids with commas "
              f"(`exclude=a,b`), or both; at most {MAX_EXCLUDED_IDS} ids.",
              openapi_examples=example("two demo items", ["item-c3-0", "item-c3-2"])),
    ] = None,
) -> ListOptions:
    excluded = frozenset(
        item.strip() for value in exclude or () for item in value.split(",") if item.strip())
    if len(excluded) > MAX_EXCLUDED_IDS:
        raise ApiError(422, "invalid request",
                       [f"query.exclude: at most {MAX_EXCLUDED_IDS} ids, not {len(excluded)}"])
    return ListOptions(n, category, excluded)


ListQuery = Annotated[ListOptions, Depends(_list_options)]


async def _impressions(request: Request) -> Callable[[str | None, RecommendationList],
                                               RecommendationList]:
    # Only a caller who may write events for the user records what the user was shown:
    # a read-only caller cannot push a user's items down through the impression penalty.
    writes = "write" in request.state.caller.scopes
    secret = await request.app.state.attribution.get() if writes else b""

    def shown(user_id: str | None, served: RecommendationList) -> RecommendationList:
        if writes:
            publish_impressions(request.app.state.publisher, request.app.state.settings,
                                user_id, served, secret)
        return served

    return shown


Reader = Depends(require("read"))
Writer = Depends(require("write"))
Cataloguer = Depends(require("catalogue"))
Admin = Depends(require("admin"))
#: For a route whose body names users (their ids are pseudonymised by the validator).
SamePseudonymKey = Depends(same_pseudonym_key)

#: `shown(user_id, served)` publishes the list's impressions when a user is known and the
#: caller has the `write` scope; returns the list.
Shown = Annotated[Callable[[str | None, RecommendationList], RecommendationList],
                  Depends(_impressions)]
