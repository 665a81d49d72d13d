from typing import Annotated

from fastapi import APIRouter, Body, Path

from streamrec.contract import Experiment, ExperimentRecord, Identifier

from ..dependencies import Admin, ExperimentsDep, RecommenderDep
from ..experiment_results import ExperimentResults
from ..openapi import example

EXAMPLE_NAME = "more-sequence"
Name = Annotated[Identifier, Path(openapi_examples=example("the example's", EXAMPLE_NAME))]

router = APIRouter(prefix="/v1/experiments", tags=["experiments"])


@router.post("", status_code=201, response_model=ExperimentRecord, dependencies=[Admin])
async def create_experiment(
        experiment: Annotated[Experiment, Body(openapi_examples=example(
            "the blend with sequence rules weighted twice, against the default", {
                "name": EXAMPLE_NAME, "mode": "ab", "holdout": 0.0,
                "variants": [{"name": "control", "share": 0.5, "settings": {}},
                             {"name": "sequence-x2", "share": 0.5,
                              "settings": {"sequence_weight": 2.0}}]}))],
        experiments: ExperimentsDep, recommender: RecommenderDep) -> ExperimentRecord:
    """Start (or plan) an experiment: users are split among the variants by a hash of
    (experiment, user); each variant overrides recommendation settings only. The first
    variant is the control. 409 when another experiment runs in the same time."""
    return await experiments.create(experiment, recommender)


@router.get("", response_model=list[ExperimentRecord], dependencies=[Admin])
async def list_experiments(experiments: ExperimentsDep) -> list[ExperimentRecord]:
    return await experiments.all()


@router.get("/{name}", response_model=ExperimentRecord, dependencies=[Admin])
async def get_experiment(name: Name, experiments: ExperimentsDep) -> ExperimentRecord:
    return await experiments.get(name)


@router.post("/{name}/stop", response_model=ExperimentRecord, dependencies=[Admin])
async def stop_experiment(name: Name, experiments: ExperimentsDep) -> ExperimentRecord:
    """Stop serving the variants (within a second in every service process); the results
    stay, and feedback on lists already served still counts."""
    return await experiments.stop(name)


@router.get("/{name}/results", response_model=ExperimentResults, dependencies=[Admin])
async def experiment_results(name: Name, experiments: ExperimentsDep
                             ) -> ExperimentResults:
    """Per variant: users, lists, impressions (items shown), clicks, add-to-carts, purchases,
    CTR and conversion with 95% intervals; each variant against the control (CTR lift, its
    confidence sequence, an always-valid mSPRT p-value: look as often as you like); a
    sample-ratio-mismatch check; for interleaving, the lists' preferences."""
    return await experiments.results(name)
