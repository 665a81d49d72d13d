from typing import Annotated

from fastapi import APIRouter, Body
from pydantic import BaseModel, ConfigDict, Field

from streamrec.contract import DEFAULT_LIST_LENGTH, MAX_LIST_LENGTH, Identifier, Label

from ..dependencies import Reader, RecommenderDep
from ..openapi import example
from ..recommender import RecommendationList

router = APIRouter(prefix="/v1/sessions", tags=["sessions"])

MAX_SESSION_ITEMS = 100


class SessionRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    items: list[Identifier] = Field(
        max_length=MAX_SESSION_ITEMS,
        description="Items the visitor interacted with so far, oldest first.")
    n: int = Field(DEFAULT_LIST_LENGTH, ge=1, le=MAX_LIST_LENGTH,
                   description="How many items to return.")
    category: Label | None = Field(None, description="Only this category.")
    exclude: list[Identifier] = Field(
        default_factory=list, max_length=1000, description="Item ids never to return.")


@router.post("/recommendations", response_model=RecommendationList,
             dependencies=[Reader])
async def session_recommendations(
    request: Annotated[SessionRequest, Body(openapi_examples=example(
        "two items seen", {"items": ["item-c3-1", "item-c3-4"], "n": 2}))],
    recommender: RecommenderDep,
) -> RecommendationList:
    """Recommendations for an anonymous visitor, from the items of their session so far (no
    user id, nothing stored): the same scoring as a user's recent history."""
    return await recommender.for_session(request.items, request.n, category=request.category,
                                         exclude=set(request.exclude))
