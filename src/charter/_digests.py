"""What an event's hash covers: digests of stored payloads, with or without their removable
fields (schema 2), and the retention markers that stand for removed ones.

Kept apart from :mod:`charter.events` (which re-exports these names) so that the event
types and the digest rules can each be read in one sitting.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator
from json.encoder import c_make_encoder, encode_basestring  # type: ignore[attr-defined]
from typing import Any

import pydantic_core

SCHEMA_VERSION = 3
"""3: as 2; the instructions' hash is on ``run_started``, not on every ``model_responded``.
2: the digest covers the canonical payload, each removable field by its own digest.
1: the digest was sha256 of the payload as stored, or the one a retention marker carried."""


def payload_digest(payload: str) -> str:
    return hashlib.sha256(payload.encode()).hexdigest()


REMOVED_KEY = "$removed"
"""A payload whose content retention removed: the event's skeleton (ids, tool, step, usage,
cost) with each removed field shown as its placeholder, plus ``{"$removed": {"at": <time>,
"fields": [paths], "digests": {path: <the removed value's digest>}}}`` (schema 2; a schema-1
marker has ``"digest"``, the original payload's, instead of ``"digests"``)."""

REMOVED = "[removed]"
"""What a removed text field shows (others show ``null`` or ``{}``: see :data:`REMOVABLE`)."""

REMOVABLE: dict[str, dict[str, tuple[tuple[str, Any], ...]]] = {
    "prompts": {
        "run_started": (("input", REMOVED),),
        "message_received": (("text", REMOVED),),
        "model_responded": (
            ("content", REMOVED),
            ("ignored_text", REMOVED),
            ("tool_calls.*.arguments", REMOVED),
        ),
        "model_call_failed": (("excerpt", REMOVED),),
        "run_finished": (("output", REMOVED),),
    },
    "tool_payloads": {
        "tool_call_proposed": (("arguments", None),),
        "policy_evaluated": (("arguments", None),),
        "approval_requested": (("arguments", {}), ("changes", None)),
        "tool_call_succeeded": (("output", REMOVED),),
        "tool_call_failed": (("error.message", REMOVED),),
    },
    "decisions": {
        "policy_evaluated": (("reason", REMOVED),),
        "approval_decided": (("note", None),),
    },
}
"""The fields retention may remove, by kind of payload and event type: path (``*`` is each
item of a list) and the placeholder a removed field shows. Every other field is kept, and the
hash chain covers it as content."""


def _removable_by_type() -> dict[str, dict[str, Any]]:
    table: dict[str, dict[str, Any]] = {}
    for types in REMOVABLE.values():
        for type_, paths in types.items():
            table.setdefault(type_, {}).update(paths)
    return table


_REMOVABLE_BY_TYPE = _removable_by_type()

_PLANS: dict[str, tuple[tuple[str, bool, Any], ...]] = {
    type_: tuple((path, "." in path, placeholder) for path, placeholder in paths.items())
    for type_, paths in _REMOVABLE_BY_TYPE.items()
}
"""Each type's removable fields as ``(path, nested, placeholder)``."""


def find_leaves(data: Any, path: str) -> Iterator[tuple[dict[str, Any], str, str]]:
    """Each place ``path`` (``tool_calls.*.arguments``) is present in the JSON ``data``:
    ``(parent, key, concrete path)``, ``*`` replaced by the item's index."""
    head, _, rest = path.partition(".")
    if head == "*":
        if isinstance(data, list):
            for i, item in enumerate(data):
                for parent, key, found in find_leaves(item, rest):
                    yield parent, key, f"{i}.{found}"
    elif isinstance(data, dict) and head in data:
        if not rest:
            yield data, head, head
        else:
            for parent, key, found in find_leaves(data[head], rest):
                yield parent, key, f"{head}.{found}"


_CANONICAL = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False)

# ``_CANONICAL.encode`` builds this C encoder (and a float formatter it does not use) on every
# call; built once here, with the same settings, it writes the same text. No cycle check: the
# values are parsed JSON.
_ENCODE: Callable[[Any, int], tuple[str, ...]] | None = (
    None
    if c_make_encoder is None
    else c_make_encoder(
        None, _CANONICAL.default, encode_basestring, None, ":", ",", True, False, True
    )
)


def _canonical(value: Any) -> bytes:
    """Canonical JSON: sorted keys, no spaces, UTF-8 (Python's ``json``, stable across
    versions, so an event sealed today verifies with a later Charter)."""
    if isinstance(value, str):
        text: str = encode_basestring(value)
    elif _ENCODE is not None:
        text = "".join(_ENCODE(value, 0))
    else:  # pragma: no cover - a Python without the json C accelerator
        text = _CANONICAL.encode(value)
    return text.encode("utf-8", "surrogatepass")


def parse_payload(payload: str) -> Any:
    """A stored payload as JSON values, read by the parser that validates event bodies, so a
    digest covers what the event shows (ValueError when it is not JSON)."""
    try:
        return pydantic_core.from_json(payload)
    except ValueError:
        raise ValueError("the payload is not JSON") from None


def leaf_digest(value: Any) -> str:
    """The digest of one removable field's value: sha256 of its canonical JSON."""
    return hashlib.sha256(_canonical(value)).hexdigest()


def content_digest(type: str, payload: str, schema_version: int = SCHEMA_VERSION) -> str:
    """The digest of a stored payload that the chain covers.

    Schema 2: for a type with removable fields (:data:`REMOVABLE`), sha256 of the payload's
    canonical JSON (sorted keys, compact) in which each removable field present is replaced
    by ``{"$d": <its digest>}``; a removed one's digest is taken from the retention marker,
    which may stand only for removable fields shown as their placeholder. Any other type: the
    payload's bytes, as stored (it never carries a marker). Schema 1: the payload's own digest,
    or the one its marker carried. ValueError, with the reason, when the marker does not fit.
    """
    if schema_version == 1:
        return stored_digest(payload)
    if schema_version not in (2, 3):
        raise ValueError(f"unknown event schema version {schema_version}")
    if type not in _PLANS:
        if REMOVED_KEY in payload and REMOVED_KEY in _as_dict(parse_payload(payload)):
            raise ValueError(f"a retention marker on a {type} event, which retention never edits")
        return payload_digest(payload)
    data = parse_payload(payload)
    if not isinstance(data, dict):
        raise ValueError("the payload is not a JSON object")
    marker = data.pop(REMOVED_KEY, None)
    removed = {} if marker is None else _removed_digests(marker)
    for path, nested, placeholder in _PLANS[type]:
        if not nested:  # a top-level field: most of them
            if path in data:
                data[path] = {"$d": _leaf(data, path, path, placeholder, removed)}
            continue
        for parent, key, found in find_leaves(data, path):
            parent[key] = {"$d": _leaf(parent, key, found, placeholder, removed)}
    if removed:
        raise ValueError(
            f"the retention marker lists {next(iter(removed))}, which is not a removable field"
            f" of this {type} event"
        )
    return hashlib.sha256(_canonical(data)).hexdigest()


def _leaf(
    parent: dict[str, Any], key: str, found: str, placeholder: Any, removed: dict[str, str]
) -> str:
    """The digest that stands for ``parent[key]``: its value's, or the removed value's that
    the retention marker kept (then the field must show its placeholder)."""
    digest = removed.pop(found, None) if removed else None
    if digest is None:
        return leaf_digest(parent[key])
    if parent[key] != placeholder:
        raise ValueError(
            f"the retention marker lists {found} as removed, but the event shows a value"
        )
    return digest


def _as_dict(data: Any) -> dict[str, Any]:
    return data if isinstance(data, dict) else {}


def _removed_digests(marker: Any) -> dict[str, str]:
    """A schema-2 marker's ``{path: digest}``, each listed field with its digest."""
    if marker is None:
        return {}
    fields = marker.get("fields") if isinstance(marker, dict) else None
    digests = marker.get("digests") if isinstance(marker, dict) else None
    if not isinstance(fields, list) or not isinstance(digests, dict):
        raise ValueError("the retention marker has no fields and digests")
    for path in fields:
        if not isinstance(path, str) or not isinstance(digests.get(path), str):
            raise ValueError(f"the retention marker gives no digest for {path}")
    if len(digests) != len(set(fields)):
        raise ValueError("the retention marker has digests for fields it does not list")
    return dict(digests)


def removal(payload: str) -> dict[str, Any] | None:
    """The retention marker of a stored payload, or None when the payload is whole."""
    if REMOVED_KEY not in payload:
        return None
    data = json.loads(payload)
    marker = data.get(REMOVED_KEY) if isinstance(data, dict) else None
    return marker if isinstance(marker, dict) else None


def stored_digest(payload: str) -> str:
    """Schema 1's digest: the payload's own, or the one its retention marker kept."""
    marker = removal(payload)
    if marker is None:
        return payload_digest(payload)
    if "digest" not in marker:
        raise ValueError("the retention marker has no digest")
    return str(marker["digest"])
