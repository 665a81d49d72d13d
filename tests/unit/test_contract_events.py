"""The event contract: what is accepted, what is rejected and with which message."""

import re

import pytest
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from streamrec.contract import (
    DAY_MS,
    ImpressionEvent,
    InvalidRecord,
    Settings,
    Variant,
    check_attribution,
    parse_event,
    parse_item,
    signed,
    with_overrides,
)
from streamrec.contract.clock import clock_ms
from streamrec.contract.decay import utc_text

NOW_MS = 1_764_000_000_000
SETTINGS = Settings()
VALID = {"event_id": "e1", "user_id": "u1", "item_id": "i1", "event_type": "view",
         "timestamp": NOW_MS}


def interaction(**changes: object) -> dict[str, object]:
    record = {**VALID, **changes}
    return {k: v for k, v in record.items() if v is not ...}


def test_valid_event_is_accepted_as_is() -> None:
    event = parse_event(interaction(), SETTINGS, now_ms=NOW_MS)
    assert (event.user_id, event.item_id, event.event_type, event.timestamp) == (
        "u1", "i1", "view", NOW_MS)


@pytest.mark.parametrize(("stamp", "epoch_ms"), [
    ("2025-11-24T16:00:00Z", 1_764_000_000_000),
    ("2025-11-24T17:00:00+01:00", 1_764_000_000_000),
    ("2025-11-24T16:00:00.250+00:00", 1_764_000_000_250),
    (1_764_000_000_000, 1_764_000_000_000),
])
def test_timestamps_are_normalised_to_epoch_ms(stamp: object, epoch_ms: int) -> None:
    assert parse_event(interaction(timestamp=stamp), SETTINGS,
                             now_ms=NOW_MS).timestamp == epoch_ms


@pytest.mark.parametrize(("record", "message"), [
    (interaction(user_id=...), "user_id: Field required"),
    (interaction(event_id=...), "event_id: Field required"),
    (interaction(item_id=""), "item_id: String should have at least 1 character"),
    (interaction(item_id="a\nb"), "item_id: must not contain invisible or control characters "
                                   "(U+000A)"),
    (interaction(user_id="x" * 257), "user_id: String should have at most 256 characters"),
    (interaction(user_id=42), "user_id: Input should be a valid string"),
    (interaction(event_type="like"), "event_type: unknown event_type 'like'; expected one of"),
    (interaction(timestamp="2025-11-24T16:00:00"), "timestamp: timestamp has no timezone"),
    (interaction(timestamp="yesterday"), "timestamp: timestamp is not ISO-8601"),
    (interaction(timestamp=1_764_000_000), "timestamp: timestamp looks like epoch seconds"),
    (interaction(timestamp=-5), "timestamp: timestamp must be a finite, non-negative"),
    (interaction(timestamp=True), "timestamp: timestamp must be epoch milliseconds or an ISO"),
    (interaction(timestamp=NOW_MS + 2 * 3600 * 1000), "timestamp: timestamp is too far in the"),
    (interaction(colour="red"), "colour: Extra inputs are not permitted"),
    (interaction(properties={"a": {"nested": 1}}), "properties.a."),
])
def test_each_invalid_field_names_itself(record: dict[str, object], message: str) -> None:
    with pytest.raises(InvalidRecord) as raised:
        parse_event(record, SETTINGS, now_ms=NOW_MS)
    assert message in raised.value.reason


@pytest.mark.parametrize(("raw", "message"), [
    (b"\xff\xfe not utf-8", "Invalid JSON"),
    (b'{"event_id": "e1", "user_id"', "Invalid JSON"),
    (b'{"timestamp": NaN}', "timestamp: timestamp must be a finite, non-negative"),
    (b'{"properties": {"score": NaN}}', "properties.score.float: Input should be a finite number"),
    (b"[1, 2]", "Input should be an object"),
    (b"x" * 70_000, "record is 70000 bytes; the limit is 65536"),
    (b"[" * 5000 + b"]" * 5000, "recursion limit"),
])
def test_bytes_that_are_not_an_event_are_rejected(raw: bytes, message: str) -> None:
    with pytest.raises(InvalidRecord) as raised:
        parse_event(raw, SETTINGS, now_ms=NOW_MS)
    assert message in raised.value.reason


def test_configured_event_types_replace_the_defaults() -> None:
    custom = Settings(event_weights={"play": 1.0, "skip": 0.5})
    assert parse_event(interaction(event_type="play"), custom, NOW_MS).event_type == "play"
    with pytest.raises(InvalidRecord, match="unknown event_type 'view'"):
        parse_event(interaction(), custom, now_ms=NOW_MS)


def test_an_impression_is_one_event_per_shown_list() -> None:
    shown = interaction(event_type="impression", item_id=..., item_ids=["i1", "i2"],
                        recommendation_id="r1", recommender="personalised")
    event = parse_event(shown, SETTINGS, now_ms=NOW_MS)
    assert isinstance(event, ImpressionEvent)
    assert (event.item_ids, event.recommender) == (["i1", "i2"], "personalised")
    unattributed = interaction(event_type="impression", item_id=..., item_ids=["i1"])
    assert parse_event(unattributed, SETTINGS, now_ms=NOW_MS).recommender == "unattributed"
    with pytest.raises(InvalidRecord) as raised:
        parse_event(interaction(event_type="impression"), SETTINGS, now_ms=NOW_MS)
    assert raised.value.reason == ("item_ids: Field required; "
                                   "item_id: Extra inputs are not permitted")
    with pytest.raises(InvalidRecord, match="item_ids: List should have at least 1 item"):
        parse_event({**shown, "item_ids": []}, SETTINGS, now_ms=NOW_MS)


@pytest.mark.parametrize("reserved", ["impression", "forget"])
def test_impression_and_forget_cannot_be_given_a_weight(reserved: str) -> None:
    with pytest.raises(ValueError, match="'impression' and 'forget' are reserved"):
        Settings(event_weights={reserved: 1.0})


def test_item_events() -> None:
    item = parse_item(b'{"item_id": "i1", "categories": ["shoes"], "available": false}', SETTINGS)
    assert (item.categories, item.available, item.tags) == (["shoes"], False, [])
    with pytest.raises(InvalidRecord, match=r"categories\.0: must not contain '\|'"):
        parse_item({"item_id": "i1", "categories": ["a|b"]}, SETTINGS)


@pytest.mark.parametrize(("item_id", "problem"), [
    ("shoes/red", "must not contain '/'"),
    ("a,b", "must not contain ','"),
    (" a", "must not start or end with blanks"),
    ("a\u00a0", "must not start or end with blanks"),
    ("a\u200bb", "must not contain invisible or control characters (U+200B)"),
    ("a\u202eb", "must not contain invisible or control characters (U+202E)"),
    ("a\ue000", "must not contain invisible or control characters (U+E000)"),
])
def test_ids_that_cannot_be_addressed_are_rejected(item_id: str, problem: str) -> None:
    with pytest.raises(InvalidRecord, match=re.escape(f"item_id: {problem}")):
        parse_event(interaction(item_id=item_id), SETTINGS)


def test_look_alike_spellings_of_an_id_are_one_id() -> None:
    decomposed, composed = "cafe\u0301", "caf\u00e9"
    assert parse_event(interaction(item_id=decomposed), SETTINGS).item_id == composed


def test_a_label_listed_twice_counts_once() -> None:
    item = parse_item({"item_id": "i", "categories": ["x", "y", "x"], "tags": ["t", "t"]},
                      SETTINGS)
    assert (item.categories, item.tags) == (["x", "y"], ["t"])


def test_retention_must_be_shorter_than_the_state_it_reads() -> None:
    with pytest.raises(ValueError, match="user_retention_days must be shorter"):
        Settings(user_retention_days=400, user_state_ttl_days=365)
    assert Settings(user_retention_days=30).user_retention_days == 30


def test_the_decay_horizon_is_the_soonest_half_lifes_and_the_anchor_is_not_in_the_future(
        ) -> None:
    """200 half-lives after the anchor (2024-01-01 by default): 2040-06-05 for the 30-day
    half-lives, 2024-07-19 for a one-day trending one (its interactions are then refused,
    below; the worker says so when it starts). An anchor in the future would make reading a
    score multiply by 2 per half-life until then."""
    assert Settings().decay_horizon == (1_704_067_200_000 + 200 * 30 * DAY_MS,
                                        "affinity_half_life_days and trending_half_life_days")
    assert Settings(trending_half_life_days=1).decay_horizon == (
        1_704_067_200_000 + 200 * DAY_MS, "trending_half_life_days")
    now = clock_ms()
    assert Settings(decay_anchor_ms=now).decay_anchor_ms == now
    with pytest.raises(ValueError, match=r"decay_anchor_ms \d+ \(\S+\) is in the future"):
        Settings(decay_anchor_ms=now + 2 * 3600 * 1000)


def test_a_variant_of_settings_past_their_horizon_still_serves() -> None:
    """The service keeps serving past the horizon (only learning stops), experiments too."""
    past = Settings(trending_half_life_days=1)  # its horizon: 2024-07-19
    variant = Variant(name="more-votes", settings={"vote_items": 30})
    assert with_overrides(past, variant).vote_items == 30


def test_an_interaction_past_the_decay_horizon_is_refused_and_an_erasure_is_not() -> None:
    """A process that runs past its horizon (checked when it started) refuses what it can no
    longer learn; erasures and impressions add no decayed weight and still pass."""
    horizon = clock_ms() + 2 * 3600 * 1000  # past the hour of clock skew events may have
    settings = Settings(decay_anchor_ms=horizon - 200 * 30 * DAY_MS)  # default half-lives
    later = horizon + 3600 * 1000
    with pytest.raises(InvalidRecord) as raised:
        parse_event(interaction(timestamp=horizon + 1), settings, now_ms=later)
    assert raised.value.reason == (
        f"timestamp: timestamp is past {utc_text(horizon)}, the last time this deployment can "
        "learn (200 half-lives of affinity_half_life_days and trending_half_life_days after "
        "decay_anchor_ms); its operator "
        "must move decay_anchor_ms (a new state)")
    assert parse_event(interaction(timestamp=horizon), settings,
                       now_ms=later).timestamp == horizon
    for other in ({"event_type": "forget"},
                  {"event_type": "impression", "item_ids": ["i1"], "recommender": "trending"}):
        record = {**interaction(item_id=...), **other, "timestamp": later}
        assert parse_event(record, settings, now_ms=later).timestamp == later


@given(st.text(alphabet=st.characters(min_codepoint=0, max_codepoint=0x7f), min_size=1,
               max_size=12))
@hypothesis_settings(max_examples=300, deadline=None)
def test_ascii_ids_follow_the_rule_exactly(item_id: str) -> None:
    """The fast path for ASCII ids accepts exactly what the rule says."""
    allowed = (item_id == item_id.strip() and not set(item_id) & set("/,")
               and all(0x20 <= ord(c) < 0x7f for c in item_id))
    try:
        assert parse_event(interaction(item_id=item_id), SETTINGS).item_id == item_id
        assert allowed, item_id
    except InvalidRecord:
        assert not allowed, item_id


def test_a_signature_covers_every_field_of_the_attribution() -> None:
    secret = b"s" * 32
    served = signed(ImpressionEvent(
        event_id="e", user_id="u", event_type="impression", timestamp=NOW_MS, item_ids=["a", "b"],
        recommendation_id="r", recommender="personalised", experiment="x", variant="v",
        weighting_lists={"1:0": ["a"], "0:1": ["b"]}), secret)
    assert check_attribution(served, secret) is served
    for change in ({"user_id": "w"}, {"item_ids": ["b", "a"]}, {"recommendation_id": "q"},
                   {"event_id": "f"}, {"timestamp": NOW_MS + 1},
                   {"recommender": "trending"}, {"variant": "w"}, {"experiment": "y"},
                   {"weighting_lists": {"1:0": ["b"], "0:1": ["b"]}}):
        with pytest.raises(InvalidRecord) as refused:
            check_attribution(served.model_copy(update=change), secret)
        assert refused.value.kind == "unsigned_attribution", change
    with pytest.raises(InvalidRecord):  # another deployment's secret
        check_attribution(served, b"t" * 32)
    with pytest.raises(InvalidRecord):  # a caller's POST: no signature is ever theirs
        check_attribution(served, None)
    own = ImpressionEvent(event_id="e", user_id="u", event_type="impression", timestamp=NOW_MS,
                          item_ids=["a"])  # unattributed, unsigned: what an app showed
    assert check_attribution(own, None) is own
