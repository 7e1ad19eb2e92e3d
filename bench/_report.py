"""What every benchmark here does at the end: the figures as a report, or as JSON."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Sequence
from typing import Any

Row = Sequence[Any]


def emit(
    results: dict[str, Any],
    table: list[Row],
    *,
    as_json: bool,
    print_report: Callable[[dict[str, Any], list[Row]], None],
) -> None:
    """Print the report, or the results with the final table as JSON (``--json``)."""
    if as_json:
        results["table"] = [
            dict(zip(("figure", "value", "target", "met"), r, strict=True)) for r in table
        ]
        json.dump(results, sys.stdout, indent=2)
        print()
    else:
        print_report(results, table)


def print_table(table: Sequence[Row]) -> None:
    """The figure/value/target/met table, each column padded to its widest cell."""
    header = ("figure", "value", "target", "met")
    widths = [max(len(row[i]) for row in [*table, header]) for i in range(4)]
    for row in [header, tuple("-" * w for w in widths), *table]:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
