"""What routes receive by injection; built once per process in `serving.app.lifespan`."""

from typing import Annotated

from fastapi import Depends, Path, Query, Request

from streamrec.contract import Settings

from .publisher import EventPublisher
from .recommender import Recommender


def _settings(request: Request) -> Settings:
    return request.app.state.settings


def _recommender(request: Request) -> Recommender:
    return request.app.state.recommender


def _publisher(request: Request) -> EventPublisher:
    return request.app.state.publisher


SettingsDep = Annotated[Settings, Depends(_settings)]
RecommenderDep = Annotated[Recommender, Depends(_recommender)]
PublisherDep = Annotated[EventPublisher, Depends(_publisher)]

ID_PATTERN = r"^[^\x00-\x1f\x7f]+$"
UserId = Annotated[str, Path(min_length=1, max_length=256, pattern=ID_PATTERN)]
ItemId = Annotated[str, Path(min_length=1, max_length=256, pattern=ID_PATTERN)]
Count = Annotated[int, Query(ge=1, le=500, description="How many items to return.")]
Category = Annotated[
    str | None,
    Query(min_length=1, max_length=128, pattern=ID_PATTERN, description="Only this category."),
]
Exclude = Annotated[
    str | None,
    Query(max_length=65536, description="Comma-separated item ids never to return."),
]
OptionalUser = Annotated[
    str | None,
    Query(min_length=1, max_length=256, pattern=ID_PATTERN,
          description="Who is shown the list: filters their seen items, records impressions."),
]


def excluded(exclude: str | None) -> set[str]:
    return {item.strip() for item in (exclude or "").split(",") if item.strip()}
