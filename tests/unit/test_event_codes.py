"""Every event type has a storage code (``store._event_log.EVENT_TYPES``): an event without
one could not be committed, and only a run that reaches it would find out."""

from __future__ import annotations

from charter.events import BODY_TYPES
from charter.store._event_log import CODES, EVENT_TYPES


def test_every_event_type_has_a_storage_code() -> None:
    types = {t.model_fields["type"].default for t in BODY_TYPES}
    assert types - set(CODES) == set(), "append the new types to _event_log.EVENT_TYPES"


def test_codes_are_unique_and_name_only_event_types() -> None:
    types = {t.model_fields["type"].default for t in BODY_TYPES}
    assert len(set(EVENT_TYPES)) == len(EVENT_TYPES)
    assert set(EVENT_TYPES) <= types
