"""What routes receive by injection; built once per process in `serving.app.lifespan`."""

from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Path, Query, Request

from streamrec.contract import MAX_LIST_LENGTH, Identifier, Label, Settings, pseudonymise

from .auth import require
from .experiments import Experiments
from .impressions import publish_impressions
from .profiles import Profiles
from .publisher import EventPublisher
from .recommender import RecommendationList, Recommender


def _settings(request: Request) -> Settings:
    return request.app.state.settings


def _recommender(request: Request) -> Recommender:
    return request.app.state.recommender


def _publisher(request: Request) -> EventPublisher:
    return request.app.state.publisher


def _profiles(request: Request) -> Profiles:
    return request.app.state.profiles


def _experiments(request: Request) -> Experiments:
    return request.app.state.experiments


SettingsDep = Annotated[Settings, Depends(_settings)]
RecommenderDep = Annotated[Recommender, Depends(_recommender)]
PublisherDep = Annotated[EventPublisher, Depends(_publisher)]
ProfilesDep = Annotated[Profiles, Depends(_profiles)]
ExperimentsDep = Annotated[Experiments, Depends(_experiments)]

def _user_id(request: Request, user_id: Annotated[Identifier, Path()]) -> str:
    return pseudonymise(user_id, request.app.state.settings.id_key)


def _optional_user(request: Request, user_id: Annotated[Identifier | None, Query(
        description="Who is shown the list: filters their seen items, records impressions "
        "(with the write scope).")] = None) -> str | None:
    return None if user_id is None else pseudonymise(user_id, request.app.state.settings.id_key)


#: A user id from the path or the query, as the service stores it (its pseudonym with
#: STREAMREC_ID_HMAC_KEY set).
UserId = Annotated[str, Depends(_user_id)]
OptionalUser = Annotated[str | None, Depends(_optional_user)]
ItemId = Annotated[Identifier, Path()]


@dataclass
class ListOptions:
    """Query parameters every list endpoint takes."""

    n: Annotated[int, Query(ge=1, le=MAX_LIST_LENGTH, description="How many items to return.")] = 10
    category: Annotated[Label | None, Query(description="Only this category.")] = None
    exclude: Annotated[
        str | None,
        Query(max_length=65536, description="Comma-separated item ids never to return."),
    ] = None

    @property
    def excluded(self) -> set[str]:
        return {item.strip() for item in (self.exclude or "").split(",") if item.strip()}


ListQuery = Annotated[ListOptions, Depends()]


def _impressions(request: Request) -> Callable[[str | None, RecommendationList],
                                               RecommendationList]:
    def shown(user_id: str | None, served: RecommendationList) -> RecommendationList:
        # Only a caller who may write events for the user records what the user was shown:
        # a read-only caller cannot push a user's items down through the impression penalty.
        if "write" in request.state.caller.scopes:
            publish_impressions(request.app.state.publisher, request.app.state.settings,
                                user_id, served)
        return served

    return shown


Reader = Depends(require("read"))
Writer = Depends(require("write"))
Cataloguer = Depends(require("catalogue"))
Admin = Depends(require("admin"))

#: `shown(user_id, served)` publishes the list's impressions when a user is known and the
#: caller has the `write` scope; returns the list.
Shown = Annotated[Callable[[str | None, RecommendationList], RecommendationList],
                  Depends(_impressions)]
