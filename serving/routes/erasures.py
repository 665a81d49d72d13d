from typing import Literal

from fastapi import APIRouter
from pydantic import BaseModel, Field

from ..dependencies import Admin, RecommenderDep

router = APIRouter(prefix="/v1/erasures", tags=["erasures"])


class Erasure(BaseModel):
    erasure_id: str
    status: Literal["done", "pending"]
    user: str = Field(description="The erased user's pseudonym (SHA-256 of the id, 16 hex).")
    requested_at_ms: int
    erased_at_ms: int | None = None
    contributions_removed: int | None = Field(
        None, description="Interactions and served lists taken back out.")


@router.get("", response_model=list[Erasure], dependencies=[Admin])
async def erasures(recommender: RecommenderDep) -> list[Erasure]:
    """The audit of every erasure: the user's pseudonym, when it was requested and done, and
    how many contributions were taken back out."""
    return [Erasure(status="done", **entry) for entry in await recommender.reader.erasures()]
