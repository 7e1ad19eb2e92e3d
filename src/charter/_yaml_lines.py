"""Where in a YAML file a pydantic error points: its path through the data, and its line."""

from __future__ import annotations

from typing import Any

import yaml

__all__ = ["locate"]


def locate(data: Any, node: yaml.Node | None, loc: tuple[Any, ...]) -> tuple[list[Any], int | None]:
    """Follow a pydantic error location through the data (and its YAML nodes, if any).

    Parts that name nothing in the data (union tags, field names under an alias) are skipped.
    Returns the clean path and the line of the deepest key or list item reached.
    """
    path: list[Any] = []
    line = node.start_mark.line + 1 if node is not None else None
    for part in loc:
        in_list = isinstance(data, list) and isinstance(part, int) and 0 <= part < len(data)
        if not (in_list or (isinstance(data, dict) and part in data)):
            continue
        data = data[part]
        path.append(part)
        node, at = _child(node, part)
        line = at if at is not None else line
    return path, line


def _child(node: yaml.Node | None, part: Any) -> tuple[yaml.Node | None, int | None]:
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            if key.value == str(part):
                return value, key.start_mark.line + 1
    if isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
        item: yaml.Node = node.value[part]
        return item, item.start_mark.line + 1
    return None, None
