"""The synthetic shop's generator: a shuffled-sessions shop holds the same sessions as the
ordered one, only in another order within each session."""

from itertools import groupby

from streamrec.datasets import events, make_world

START_MS = 1_704_067_200_000
FUNNEL = ["view", "click", "add_to_cart", "purchase"]


def sessions(ordered: bool) -> list[list[tuple[str, str, str]]]:
    """Each session's (user, item, event type) in stream order (a session: one user's run)."""
    world = make_world(users=30, categories=4, items_per_category=20, seed=3)
    stream = list(events(world, 2000, start_ms=START_MS, session_length=6,
                         ordered_sessions=ordered))
    assert [e.timestamp for e in stream] == [START_MS + k * 1000 for k in range(2000)]
    return [[(e.user_id, e.item_id, e.event_type) for e in run]
            for _, run in groupby(stream, key=lambda e: e.user_id)]


def test_shuffled_sessions_hold_the_same_visits_in_another_order() -> None:
    ordered, shuffled = sessions(True)[:-1], sessions(False)[:-1]  # the last one is cut
    assert [sorted(s) for s in ordered] == [sorted(s) for s in shuffled]
    reordered = sum(o != s for o, s in zip(ordered, shuffled, strict=True))
    assert reordered > len(ordered) / 2
    for session in shuffled:  # a visit's funnel stays together: each step follows its own
        for previous, (_, item, event_type) in zip([None, *session], session, strict=False):
            if event_type != "view":
                assert previous is not None and previous[1] == item
                assert FUNNEL.index(previous[2]) == FUNNEL.index(event_type) - 1
