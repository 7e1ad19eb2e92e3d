"""Provenance: where the values in a proposed call came from, answered from the run's events.

A :class:`ProvenanceTracker` is fed the run's events in order and indexes the values each
source put into the run; at a decision it attributes every argument value (strings and
numbers, nested ones too) to the kinds of source it was found in:

* ``principal``: the run's input and the principal's messages;
* ``tool_output``: results of tools whose contract trusts their output (the CRM, billing);
* ``retrieved``: results recorded ``untrusted`` (web pages, customer tickets, emails, search
  hits): text others wrote, the one *untrusted* kind;
* ``config``: the agent's own instructions;
* ``allowlist``: for destinations only, a value on one of the policy's allowlists;
* ``model``: found in no source (the model wrote it, or changed what it copied).
``memory`` and ``policy`` are kinds of the grammar that no event produces yet.

Matching is by value, never by position, so it survives the model re-typing a value:

* a scalar matches exactly (case-folded, whitespace collapsed; numbers by value, so ``35``
  matches ``"35.00"`` in a ticket) a source's value or a token of a source's text. Too common
  to attribute, and so never matched: strings under ``MIN_STRING`` (4) characters, strings
  with no digit and nothing of an address or URL (``@ / _ #``, ``host.tld``): vocabulary
  such as ``open``, ``refund`` or ``don't``, not data; and integers under ``MIN_NUMBER``
  (10) in size, which every text contains (list items, quantities, "3-5 days"). What gets
  smuggled (identifiers, amounts, addresses, URLs) has digits or such punctuation.
* a longer text also matches by any run of ``GRAM_WORDS`` (5) consecutive words it shares
  with a source text: a copied sentence, inside or around the model's own words. Four common
  words in a row ("thank you for your") coincide by chance far more often than five.

A value counts as *untrusted* when some piece of it was found only in untrusted sources: a
value that the principal also typed, or a trusted tool also returned, is vouched for by that
source (an attacker gains nothing by repeating it). Trusted tools often echo their arguments
(``lookup_order`` returns the ``order_id`` it was asked for), which would launder an
attacker's value into ``tool_output``; so a value a result shares with its own call's
arguments keeps the provenance those arguments had, not the tool's.

Indexing is incremental (each event once, in order) and a decision costs lookups in hash
tables proportional to the size of the call's arguments, never a rescan of the run.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from charter.events import (
    Event,
    MessageReceived,
    ProvenanceRecord,
    RunStarted,
    ToolCallProposed,
    ToolCallSucceeded,
)

UNTRUSTED: frozenset[str] = frozenset({"retrieved"})
TRUSTED: frozenset[str] = frozenset(
    {"principal", "tool_output", "config", "allowlist", "policy", "memory"}
)
MIN_STRING = 4
MIN_NUMBER = 10
GRAM_WORDS = 5

Kinds = frozenset[str]
Key = tuple[str, Any]  # ("s", text) | ("n", number) | ("g", hash of a run of words)
_MODEL: Kinds = frozenset({"model"})
_PRINCIPAL: Kinds = frozenset({"principal"})
_TRIM = "\"'`.,;:!?()[]{}<>*"
_THOUSANDS = re.compile(r"^\d{1,3}(,\d{3})+(\.\d+)?$")
_DECIMAL_COMMA = re.compile(r"^\d+,\d{1,2}$")
_DATA = re.compile(r"\d|@|/|_|#|\w\.\w{2,}")


@dataclass(frozen=True, slots=True)
class Assessment:
    """The provenance of one proposed call, as a policy decision uses it."""

    untrusted_in_args: bool
    untrusted_in_context: bool
    arguments: Mapping[str, Kinds]
    destinations: Mapping[str, Kinds]
    untrusted_tools: tuple[str, ...] = ()

    def record(self) -> ProvenanceRecord:
        """The compact value recorded on ``policy_evaluated``."""
        return ProvenanceRecord(
            untrusted_in_args=self.untrusted_in_args,
            untrusted_in_context=self.untrusted_in_context,
            arguments={path: tuple(sorted(k)) for path, k in self.arguments.items()},
            destinations={path: tuple(sorted(k)) for path, k in self.destinations.items()},
            untrusted_tools=self.untrusted_tools,
        )


class ProvenanceTracker:
    """An index from values to the kinds of source that put them into the run."""

    def __init__(
        self,
        *,
        config: Iterable[str] = (),
        allowlisted: Callable[[Any], bool] | None = None,
    ) -> None:
        self._index: dict[Key, Kinds] = {}
        self._echo: dict[str, dict[Key, Kinds]] = {}  # call id -> its arguments' provenance
        self._untrusted_tools: dict[str, None] = {}  # an ordered set
        self._allowlisted = allowlisted or (lambda value: False)
        for text in config:
            self.add(text, frozenset({"config"}))

    # -- feeding -----------------------------------------------------------------------------

    def observe(self, event: Event) -> None:
        """Index what ``event`` brought into the run (call once per event, in order)."""
        body = event.body
        if isinstance(body, RunStarted):
            self.add(body.input, _PRINCIPAL)
        elif isinstance(body, MessageReceived):
            self.add(body.text, _PRINCIPAL)
        elif isinstance(body, ToolCallProposed):
            if body.arguments:
                self._echo[body.call_id] = self._echo_of(body.arguments)
        elif isinstance(body, ToolCallSucceeded):
            echo = self._echo.pop(body.call_id, {})
            if body.untrusted:
                self._untrusted_tools[body.tool] = None
                self.add(body.output, UNTRUSTED)
            else:
                self.add(body.output, frozenset({"tool_output"}), echo=echo)

    def add(self, value: Any, kinds: Kinds, *, echo: Mapping[Key, Kinds] | None = None) -> None:
        """Index every scalar, token and run of words in ``value`` as coming from ``kinds``."""
        index = self._index
        for key in _keys(value):
            found = echo.get(key, kinds) if echo else kinds
            known = index.get(key)
            index[key] = found if known is None else known | found

    def _echo_of(self, arguments: Mapping[str, Any]) -> dict[Key, Kinds]:
        echo: dict[Key, Kinds] = {}
        for _, leaf in _leaves(arguments, ""):
            kinds, _ = self.sources(leaf)
            for key in _keys(leaf):
                echo[key] = echo.get(key, frozenset()) | kinds
        return echo

    # -- asking ------------------------------------------------------------------------------

    @property
    def untrusted_in_context(self) -> bool:
        return bool(self._untrusted_tools)

    def sources(self, value: Any) -> tuple[Kinds, bool]:
        """The kinds of source a scalar came from, and whether some piece of it is untrusted.

        A piece found in a trusted source is attributed to the trusted kinds only.
        """
        index = self._index
        whole = [index[k] for k in _scalar_keys(value) if k in index]
        if whole:  # the value itself, under any of its keys: one piece
            pieces = [frozenset().union(*whole)]
        elif isinstance(value, str):
            pieces = [index[k] for k in _text_keys(_normal(value)) if k in index]
        else:
            pieces = []
        kinds: set[str] = set()
        untrusted = False
        for found in pieces:
            trusted = found & TRUSTED
            kinds |= trusted or found
            untrusted = untrusted or (not trusted and bool(found & UNTRUSTED))
        if not whole:
            kinds.add("model")
        return frozenset(kinds), untrusted

    def destination_sources(self, value: Any) -> Kinds:
        """What vouches for a destination: the trusted sources it was found in; else the
        policy's allowlists when one holds it; else where it was found, or ``model``."""
        values = value if isinstance(value, list | tuple) else [value]
        out: set[str] = set()
        for item in values:
            kinds, _ = self.sources(item)
            trusted = kinds & TRUSTED
            if trusted and "model" not in kinds:
                out |= trusted
            elif self._allowlisted(item):
                out.add("allowlist")
            else:
                out |= kinds
        return frozenset(out) or _MODEL

    def assess(self, arguments: Mapping[str, Any], destinations: Mapping[str, Any]) -> Assessment:
        """The provenance of a proposed call's arguments and destinations."""
        by_path: dict[str, Kinds] = {}
        untrusted = False
        for path, leaf in _leaves(arguments, ""):
            kinds, bad = self.sources(leaf)
            by_path[path] = kinds
            untrusted = untrusted or bad
        return Assessment(
            untrusted_in_args=untrusted,
            untrusted_in_context=self.untrusted_in_context,
            arguments=by_path,
            destinations={p: self.destination_sources(v) for p, v in destinations.items()},
            untrusted_tools=tuple(self._untrusted_tools),
        )


# -- values to keys ------------------------------------------------------------------------------


def _leaves(value: Any, path: str) -> Iterator[tuple[str, Any]]:
    """(dotted path, scalar) for every string and number in a JSON value."""
    if isinstance(value, Mapping):
        for key, item in value.items():
            yield from _leaves(item, f"{path}.{key}" if path else str(key))
    elif isinstance(value, list | tuple):
        for i, item in enumerate(value):
            yield from _leaves(item, f"{path}.{i}" if path else str(i))
    elif isinstance(value, str) or _is_number(value):
        yield path, value


def _keys(value: Any) -> Iterator[Key]:
    """The keys a source value is indexed under: each scalar, and each text's pieces."""
    for _, leaf in _leaves(value, ""):
        yield from _scalar_keys(leaf)
        if isinstance(leaf, str):
            yield from _text_keys(_normal(leaf))


def _scalar_keys(value: Any) -> list[Key]:
    """A scalar's own keys: its normal text, and its number when it reads as one."""
    if isinstance(value, str):
        text = _normal(value)
        keys: list[Key] = [("s", text)] if _distinctive(text) else []
        number = _number(text)
        if number is not None:
            keys.append(("n", number))
        return keys
    if _is_number(value) and math.isfinite(value) and _notable(value):
        return [("n", float(value))]
    return []


def _text_keys(text: str) -> Iterator[Key]:
    """Keys for the pieces of a text: distinctive tokens, numbers, runs of words."""
    words = [w for w in (t.strip(_TRIM) for t in text.split()) if w]
    if len(words) > 1:
        for word in words:
            yield from _scalar_keys(word)
            if word.startswith("mailto:"):
                yield from _scalar_keys(word[7:])
    for i in range(len(words) - GRAM_WORDS + 1):
        yield ("g", hash(tuple(words[i : i + GRAM_WORDS])))


def _normal(text: str) -> str:
    return " ".join(text.casefold().split())


def _distinctive(text: str) -> bool:
    """Data rather than vocabulary: has a digit, or looks like an address, a URL or a host."""
    return len(text) >= MIN_STRING and _DATA.search(text) is not None


def _number(text: str) -> float | None:
    """A token that reads as an amount (``120.00``, ``€35``, ``1,240.00``, ``120,50``)."""
    text = text.strip("€$£").removesuffix("eur").strip()
    if _THOUSANDS.match(text):
        text = text.replace(",", "")
    elif _DECIMAL_COMMA.match(text):
        text = text.replace(",", ".")
    if not text or not (text[0].isdigit() or text[0] == "-"):
        return None
    try:
        number = float(text)
    except ValueError:
        return None
    return number if math.isfinite(number) and _notable(number) else None


def _notable(number: float) -> bool:
    return abs(number) >= MIN_NUMBER or number != int(number)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)
