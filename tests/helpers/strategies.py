"""Hypothesis strategies for Charter's event bodies, built from the models' own fields.

The strategy for a body type is derived from its pydantic fields, so a field added later is
generated too; a field type the builder does not know fails loudly instead of being skipped.
"""

from __future__ import annotations

import types
from typing import Any, Literal, Union, get_args, get_origin

from hypothesis import strategies as st
from pydantic import BaseModel

from charter.events import BODY_TYPES, GENESIS_HASH, Event

finite_floats = st.floats(allow_nan=False, allow_infinity=False)

json_values: st.SearchStrategy[Any] = st.recursive(
    st.none() | st.booleans() | st.integers() | finite_floats | st.text(max_size=12),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)
"""Values that JSON carries unchanged (lists, not tuples; finite floats; string keys)."""


def strategy_for(annotation: Any) -> st.SearchStrategy[Any]:
    """A strategy for one field annotation of an event body."""
    origin = get_origin(annotation)
    if annotation is Any:
        return json_values
    if origin is Literal:
        return st.sampled_from(get_args(annotation))
    if origin in (Union, types.UnionType):
        return st.one_of(*(strategy_for(arg) for arg in get_args(annotation)))
    if origin is tuple:
        item, ellipsis = get_args(annotation)
        assert ellipsis is Ellipsis, annotation
        return st.lists(strategy_for(item), max_size=3).map(tuple)
    if origin is dict:
        key, value = get_args(annotation)
        assert key is str, annotation
        return st.dictionaries(st.text(max_size=8), strategy_for(value), max_size=4)
    simple: dict[Any, st.SearchStrategy[Any]] = {
        type(None): st.none(),
        str: st.text(max_size=24),
        int: st.integers(),
        float: finite_floats,
        bool: st.booleans(),
    }
    if annotation in simple:
        return simple[annotation]
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return body_strategy(annotation)
    raise TypeError(f"no strategy for field type {annotation!r}; add one to this builder")


def body_strategy(cls: type[BaseModel]) -> st.SearchStrategy[Any]:
    """Instances of ``cls`` with every field (optional ones included) generated."""
    fields = {name: strategy_for(f.annotation) for name, f in cls.model_fields.items()}
    return st.fixed_dictionaries(fields).map(lambda kwargs: cls(**kwargs))


any_body: st.SearchStrategy[Any] = st.one_of(*(body_strategy(t) for t in BODY_TYPES))


def seal_chain(run_id: str, bodies: list[Any], *, start_at: float = 1_000.0) -> list[Event]:
    """Seal ``bodies`` into a hash chain, one second apart."""
    events: list[Event] = []
    prev = GENESIS_HASH
    for i, body in enumerate(bodies):
        event = Event.seal(run_id=run_id, seq=i + 1, at=start_at + i, body=body, prev_hash=prev)
        events.append(event)
        prev = event.hash
    return events


@st.composite
def event_chains(
    draw: st.DrawFn, *, min_size: int = 1, max_size: int = 8, run_id: str = "run_test"
) -> list[Event]:
    bodies = draw(st.lists(any_body, min_size=min_size, max_size=max_size))
    return seal_chain(run_id, bodies)
