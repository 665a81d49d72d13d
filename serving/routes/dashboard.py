"""The live dashboard: an open page (plain HTML, JavaScript and SVG, nothing fetched from
elsewhere) that asks for an admin key and reads the admin-only data below."""

from importlib.resources import files

from fastapi import APIRouter
from fastapi.responses import HTMLResponse
from pydantic import BaseModel, Field

from ..dashboard import Point, Snapshot, series
from ..dependencies import Admin, DashboardDep, RecommenderDep, UserId
from ..recommender import RecommendationList, RecommendedItem

router = APIRouter(tags=["dashboard"])

PAGE = files("serving").joinpath("static/dashboard.html").read_text()
#: Trending items the page shows.
TRENDING_SHOWN = 10
#: Recommendations the user lookup shows.
LOOKUP_LENGTH = 10


class DeadLetter(BaseModel):
    at_ms: int
    kind: str
    source: str = Field(description="topic:partition of the rejected record.")
    offset: int
    reason: str


class DashboardData(BaseModel):
    sample_seconds: float
    points: list[Point] = Field(description="Oldest first, one per sampling interval.")
    latest: Snapshot | None = Field(description="The newest snapshot's totals.")
    dead_letters: list[DeadLetter] = Field(description="The newest first.")
    trending: list[RecommendedItem]


@router.get("/dashboard", response_class=HTMLResponse, include_in_schema=False)
async def dashboard_page() -> HTMLResponse:
    return HTMLResponse(PAGE)


@router.get("/v1/dashboard/series", response_model=DashboardData, dependencies=[Admin])
async def dashboard_series(dashboard: DashboardDep, recommender: RecommenderDep
                           ) -> DashboardData:
    """The dashboard's data: rates, lag, latency and CTR per sampling interval (from
    snapshots kept in Redis), the latest dead letters (whose reasons may name users) and
    trending items now (not counted as a served list)."""
    snapshots = await dashboard.snapshots()
    return DashboardData(
        sample_seconds=dashboard.sample_seconds, points=series(snapshots),
        latest=snapshots[-1] if snapshots else None,
        dead_letters=[DeadLetter.model_validate(entry)
                      for entry in await recommender.reader.latest_dead_letters()],
        trending=await recommender.trending_items(TRENDING_SHOWN))


@router.get("/v1/dashboard/users/{user_id}/recommendations", response_model=RecommendationList,
            dependencies=[Admin])
async def user_preview(user_id: UserId, recommender: RecommenderDep) -> RecommendationList:
    """What the user would be shown now. Not published as an impression: looking changes
    neither their lists (the impression penalty) nor the CTR."""
    return await recommender.for_user(user_id, LOOKUP_LENGTH)
