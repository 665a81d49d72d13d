from fastapi import APIRouter
from pydantic import BaseModel, Field

from ..dependencies import Admin, RecommenderDep
from ..scoring import weighting_label

router = APIRouter(prefix="/v1/metrics", tags=["metrics"])


class RecommenderMetrics(BaseModel):
    events: dict[str, int]
    ctr: float | None


class BlendMetrics(BaseModel):
    serving: str = Field(
        description="The (co-occurrence:sequence[:neighbours]) weighting lists use now.")
    trials: float = Field(description="Judged lists, decayed.")
    hit_rates: dict[str, float] = Field(
        description="Per judged weighting, the share of judged lists whose item it held.")


class Metrics(BaseModel):
    recommenders: dict[str, RecommenderMetrics]
    counters: dict[str, int]
    blend: BlendMetrics


@router.get("", response_model=Metrics, dependencies=[Admin])
async def metrics(recommender: RecommenderDep) -> Metrics:
    """Online metrics from the feedback loop: per recommender the lists served
    (`impression`), the items shown in them (`items_shown`) and the events on those items,
    each counted once per list, item and event type (CTR = clicks / items shown); the
    worker's counters; and the self-tuning blend's evidence and the weighting it serves."""
    reader = recommender.reader
    per_recommender = await reader.recommender_metrics()
    evidence = await reader.blend_evidence()
    return Metrics(
        recommenders={
            name: RecommenderMetrics(
                events=events,
                ctr=events.get("click", 0) / events["items_shown"]
                if events.get("items_shown") else None)
            for name, events in per_recommender.items()
        },
        counters=await reader.counters(),
        blend=BlendMetrics(
            serving=weighting_label(await recommender.served_weighting()),
            trials=evidence.trials,
            hit_rates=evidence.hit_rates()),
    )
