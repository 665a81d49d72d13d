"""One table of cases for the definition of a session, which the read path applies in Python
(serving/scoring.py) and the write path in Lua (stream_app/lua/apply_batch.lua)."""

from typing import NamedTuple

#: The session gap of the cases, in minutes (times below are in minutes too).
GAP_MINUTES = 30


class SessionCase(NamedTuple):
    name: str
    times: list[int]  # the user's items, newest first
    at: int  # the moment asked about: a request, or a new event
    inside: list[bool]  # which of the items share its session


SESSION_CASES = [
    SessionCase("all close", [100, 90, 80], 110, [True, True, True]),
    SessionCase("gaps exactly at the limit", [100, 70], 130, [True, True]),
    SessionCase("one minute past it", [100, 69], 130, [True, False]),
    SessionCase("a new session", [100], 131, [False]),
    SessionCase("a broken chain stays broken", [100, 80, 40, 35], 100,
                [True, True, False, False]),
    SessionCase("the same minute", [100, 100], 100, [True, True]),
    # a late event (stamped 9:00, arriving after 10:00) sits next to 8:55, not to 10:00
    SessionCase("a late event", [600, 535], 540, [False, True]),
    SessionCase("a late event joins the session it came close to", [620, 600, 535], 560,
                [False, False, True]),
]
