"""The webhook signature scheme and body mapping (charter.webhooks), on plain values."""

from __future__ import annotations

import hashlib
import hmac

import pytest

from charter.errors import InputError
from charter.webhooks import Refused, check_template, render, sign, verify

SECRET = b"0123456789abcdef0123"
BODY = b'{"ticket": {"id": 7, "tags": ["a", "b"]}, "who": "ann"}'


def _headers(stamp: str, signature: str, delivery: str = "d-1") -> dict[str, str]:
    return {
        "charter-timestamp": stamp,
        "charter-delivery": delivery,
        "charter-signature": signature,
    }


def test_the_signature_is_hmac_sha256_over_timestamp_dot_body() -> None:
    expected = hmac.new(SECRET, b"1000." + BODY, hashlib.sha256).hexdigest()
    assert sign(SECRET, "1000", BODY) == f"v1={expected}"
    ok = verify(SECRET, _headers("1000", f"v1=00, v1={expected}"), BODY, now=1100)
    assert (ok.delivery_id, ok.signed_at, ok.checked_at) == ("d-1", 1000.0, 1100)


@pytest.mark.parametrize(
    ("headers", "now", "reason"),
    [
        (_headers("1000", sign(b"another-secret-1234", "1000", BODY)), 1000, "bad_signature"),
        (_headers("1001", sign(SECRET, "1000", BODY)), 1000, "bad_signature"),
        (_headers("1000", sign(SECRET, "1000", BODY)), 1301, "stale"),
        (_headers("1000", sign(SECRET, "1000", BODY)), 699, "stale"),
        (_headers("soon", sign(SECRET, "soon", BODY)), 1000, "bad_timestamp"),
        ({"charter-timestamp": "1000", "charter-delivery": "d"}, 1000, "missing_header"),
    ],
)
def test_a_delivery_that_does_not_prove_its_sender_is_refused(
    headers: dict[str, str], now: float, reason: str
) -> None:
    with pytest.raises(Refused) as refused:
        verify(SECRET, headers, BODY, now=now, tolerance_s=300)
    assert refused.value.reason == reason


def test_a_template_maps_fields_of_the_body() -> None:
    import json

    body = json.loads(BODY)
    assert render("#{ticket.id} by {who} {{x}} {ticket.tags}", body) == '#7 by ann {x} ["a", "b"]'
    assert render("{ticket.tags.1}", body) == "b"
    with pytest.raises(InputError, match=r"ticket\.missing"):
        render("{ticket.missing}", body)
    with pytest.raises(ValueError, match="brace"):
        check_template("oops {")
    with pytest.raises(ValueError, match="field path"):
        check_template("{a..b}")
