"""Every setting the write script reads is either recorded with the state (LEARNING_SETTINGS:
erasure takes events back out with them) or, on purpose, not: a new setting that shapes what
an event adds to shared state must be recorded, or erasing earlier users turns inexact."""

import re
from pathlib import Path

from streamrec.contract.settings import LEARNING_SETTINGS

APPLY_BATCH = Path(__file__).parents[2] / "stream_app" / "lua" / "apply_batch.lua"

#: What apply_batch.lua reads from its config, by the learning setting it comes from.
RECORDED = {
    "event_weights": "event_weights", "pair_window": "pair_window",
    "sequence_window": "sequence_window", "session_gap_ms": "session_gap_minutes",
    "earlier_session_pair": "earlier_session_pair",
    "cooccurrence_half_life_ms": "cooccurrence_half_life_days",
    "trending_half_life_ms": "trending_half_life_days", "decay_anchor_ms": "decay_anchor_ms",
}
#: Read by the script, not recorded, and why that keeps erasure exact.
NOT_RECORDED = {
    "learning_settings": "the record itself",
    "record_fields": "the wire format",
    "list_separator": "the wire format", "shown_separator": "the wire format",
    "recommender_field": "field names", "experiment_field": "field names",
    "owner_field": "field names", "unattributed": "a field value",
    "applied_at_ms": "the time of the call",
    "max_commands": "how a batch is split into calls, not what it adds",
    "history_length": "at least every window (validated), so pairs never reach past it",
    "affinity_half_life_ms": "the user's own state, deleted by erasure",
    "affinity_items_kept": "the user's own state, deleted by erasure",
    "user_state_ttl_seconds": "expiry, not content",
    "event_id_window_ms": "which resent events are skipped, decided before learning",
    "event_ids_kept": "which resent events are skipped, decided before learning",
    "shared_after_items": "the new-user rule: erasure checks whether the user joined",
    "shared_after_events": "the new-user rule: erasure checks whether the user joined",
    "cooccurrence_row_cap": "an exactness limit the README states (evicted entries)",
    "item_users_kept": "an exactness limit like the row cap (evicted users)",
    "recommendation_ttl_seconds": "served lists, deleted by erasure",
    "shown_lists_kept": "served lists, deleted by erasure",
    "shown_ttl_seconds": "served lists, deleted by erasure",
    "blend_evidence_horizon": "the blend's anonymous evidence, kept by erasure",
    "blend_trials_field": "a field name", "shared_field": "a field name",
}


def test_every_setting_the_write_script_reads_is_recorded_or_left_out_on_purpose() -> None:
    read = set(re.findall(r"\bconfig\.([a-z_]+)", APPLY_BATCH.read_text()))
    assert read == RECORDED.keys() | NOT_RECORDED.keys()


def test_the_record_holds_the_learning_settings_the_script_reads_and_the_pseudonym_key(
        ) -> None:
    """The pseudonym key is not read by the script: the validator applies it before."""
    assert set(LEARNING_SETTINGS) == {*RECORDED.values(), "id_hmac_key_fingerprint"}
