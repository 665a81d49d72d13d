"""Re-ranking: the impression penalty and the per-category cap, exactly."""

from serving.reranking import cap_per_category, penalise_shown
from serving.scoring import ScoredItem


def ranked(*scores: tuple[str, float]) -> list[ScoredItem]:
    return [ScoredItem(item, score, None) for item, score in scores]


def test_items_passed_over_lose_a_factor_per_extra_showing() -> None:
    result = penalise_shown(ranked(("a", 1.0), ("b", 0.9), ("c", 0.5)),
                            {"a": 4, "b": 2}, free=2, penalty=0.5)
    # a: shown 4 times, 2 beyond the free 2 -> 1.0 * 0.5^2; b: within the free showings.
    assert [(s.item_id, s.score) for s in result] == [("b", 0.9), ("c", 0.5), ("a", 0.25)]


def test_category_cap_skips_items_of_full_categories() -> None:
    items = ranked(("a", 5), ("b", 4), ("c", 3), ("d", 2), ("e", 1))
    primary = {"a": "shoes", "b": "shoes", "c": "shoes", "d": None, "e": "hats"}
    assert [s.item_id for s in cap_per_category(items, primary, cap=2, n=3)] == [
        "a", "b", "d"]
    assert [s.item_id for s in cap_per_category(items, primary, cap=1, n=4)] == [
        "a", "d", "e"]  # only 3 pass the cap: the caller tops up
