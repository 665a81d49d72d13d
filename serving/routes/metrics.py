from fastapi import APIRouter
from pydantic import BaseModel

from ..dependencies import Admin, RecommenderDep

router = APIRouter(prefix="/v1/metrics", tags=["metrics"])


class RecommenderMetrics(BaseModel):
    events: dict[str, int]
    ctr: float | None


class Metrics(BaseModel):
    recommenders: dict[str, RecommenderMetrics]
    counters: dict[str, int]


@router.get("", response_model=Metrics, dependencies=[Admin])
async def metrics(recommender: RecommenderDep) -> Metrics:
    """Online metrics from the feedback loop: per recommender the lists served
    (`impression`), the items shown in them (`items_shown`) and the events on those items,
    each counted once per list, item and event type (CTR = clicks / items shown); and the
    worker's counters."""
    reader = recommender.reader
    per_recommender = await reader.recommender_metrics()
    return Metrics(
        recommenders={
            name: RecommenderMetrics(
                events=events,
                ctr=events.get("click", 0) / events["items_shown"]
                if events.get("items_shown") else None)
            for name, events in per_recommender.items()
        },
        counters=await reader.counters(),
    )
