"""The streaming reference: exact counts, the team's similarities, window, votes and ties."""

import numpy as np

from streamrec.evaluation.reference import ReferenceMethod, StreamingReference, top_positive

COSINE = ReferenceMethod("cosine", 50)
JACCARD = ReferenceMethod("jaccard", 50)


def learned(histories: list[tuple[str, list[str]]], methods=(COSINE, JACCARD)
            ) -> StreamingReference:
    items = [item for _, history in histories for item in history]
    reference = StreamingReference(items, methods)
    for user, history in histories:
        for item in history:
            reference.learn(user, item)
    return reference


def test_cosine_and_jaccard_rank_as_their_formulas_do() -> None:
    # n_a = 5 (u1..u4 and q), n_x = 6 with c_ax = 2, n_y = 1 with c_ay = 1. For q (history a):
    # cosine x 2/sqrt(5*6) = 0.365 < y 1/sqrt(5*1) = 0.447; jaccard x 2/(5+6-2) = 0.222 >
    # y 1/(5+1-1) = 0.2; raw counts would put x first in both.
    reference = learned([("u1", ["a", "x"]), ("u2", ["a", "x"]), ("u3", ["a", "y"]),
                         ("u4", ["a"]), ("q", ["a"])] + [(f"v{k}", ["x"]) for k in range(4)])
    assert reference.users_of[reference.index["a"]] == 5
    assert reference.pairs[50][reference.index["a"], reference.index["x"]] == 2
    lists = reference.recommend("q", 10)
    assert lists == {COSINE.name: ["y", "x"], JACCARD.name: ["x", "y"]}


def test_pairs_reach_back_exactly_the_window() -> None:
    near, far = ReferenceMethod("cosine", 1), ReferenceMethod("cosine", 2)
    reference = learned([("u", ["p", "q", "r"]), ("v", ["p"])], (near, far))
    # Window 1 pairs p-q and q-r only; window 2 also p-r (a tie with q, to the lower index).
    assert reference.recommend("v", 10) == {near.name: ["q"], far.name: ["q", "r"]}


def test_the_newest_items_vote_most_and_a_repeat_adds_no_pair() -> None:
    # s pairs only with k, t only with m (equal counts and n): the newer voter's wins.
    base = [("u1", ["s", "k"]), ("u2", ["t", "m"])]
    newest_t = learned([*base, ("q", ["s", "t"])], (COSINE,))
    newest_s = learned([*base, ("q", ["t", "s"])], (COSINE,))
    assert newest_t.recommend("q", 10)[COSINE.name] == ["m", "k"]
    assert newest_s.recommend("q", 10)[COSINE.name] == ["k", "m"]
    # Touching s again makes it the newest voter without counting a user or a pair twice.
    newest_t.learn("q", "s")
    assert newest_t.recommend("q", 10)[COSINE.name] == ["k", "m"]
    assert newest_t.users_of[newest_t.index["s"]] == 2
    assert newest_t.pairs[50][newest_t.index["s"], newest_t.index["t"]] == 1


def test_only_the_votes_of_the_last_twenty_items_count() -> None:
    # q's oldest item o is 21st newest: its partner z gets no vote.
    history = ["o", *(f"h{k}" for k in range(20))]
    reference = learned([("u", ["o", "z"]), ("q", history)], (COSINE,))
    assert "z" not in reference.recommend("q", 10)[COSINE.name]
    reference = learned([("u", ["o", "z"]), ("q", history[:20])], (COSINE,))
    assert "z" in reference.recommend("q", 10)[COSINE.name]


def test_top_positive_keeps_the_best_k_ties_to_the_lower_index() -> None:
    scores = np.array([0.5, 0.0, 0.9, 0.5, -1.0, 0.5, 0.7], dtype=np.float32)
    assert top_positive(scores, 3).tolist() == [2, 6, 0]
    assert top_positive(scores, 4).tolist() == [2, 6, 0, 3]
    assert top_positive(scores, 10).tolist() == [2, 6, 0, 3, 5]
