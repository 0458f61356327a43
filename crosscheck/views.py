"""Shorter views of a long report, as torchinfo folds its table: rows folded to a module depth,
or only the rows where the field changes. Pure functions of the report's rows (names in graph
order); the input row and the output rows are always kept.

>>> depth_of("layer1.0.conv1"), depth_of("add")
(3, 1)
"""

from __future__ import annotations

from rfarith.walk import Row


def depth_of(name: str) -> int:
    """How deep a node sits in the module tree: its name's dotted parts."""
    return len(name.split("."))


def folded(rows: list[Row], depth: int, keep: set[str]) -> list[Row]:
    """The rows at most ``depth`` deep, and of every deeper group (the nodes under one module
    path of ``depth`` parts) its last row only: the module's output. ``keep``: rows never left
    out (the input, the outputs)."""
    last_of_group: dict[str, str] = {}
    for row in rows:
        if depth_of(row.name) > depth:
            last_of_group[".".join(row.name.split(".")[:depth])] = row.name
    shown = set(last_of_group.values()) | keep
    return [row for row in rows if depth_of(row.name) <= depth or row.name in shown]


def _same_field(a: Row, b: Row) -> bool:
    if a.field is None or b.field is None:
        return False
    fa, fb = a.field, b.field
    return (fa.n, fa.j, fa.r, fa.start, fa.flags, fa.global_via) == (fb.n, fb.j, fb.r, fb.start, fb.flags, fb.global_via)


def changing(rows: list[Row], keep: set[str]) -> list[Row]:
    """The rows whose field (n, j, r, start, flags) differs from the row shown above them: a
    BatchNorm, an activation, a reshape or a getitem that only passes the field on is left out.
    ``keep``: rows never left out."""
    shown: list[Row] = []
    for row in rows:
        if row.name in keep or not shown or not _same_field(row, shown[-1]):
            shown.append(row)
    return shown
