"""Tables as JSON, CSV and markdown, with typed values instead of strings.

The tables are ``rfarith.Report.table`` and :func:`crosscheck.compare` frames: pandas
DataFrames indexed by node name whose cells hold ints, floats, ``Fraction`` jumps, shape
tuples, per-axis ``(lo, hi)`` bounds, flag collections and enums. Every rule here is driven by
the *type* of the cells, never by a column's name; the only names read are the ``r_<axis>``
columns (to learn the axis names when ``frame.attrs["axes"]`` is absent).

- :func:`to_json` / :func:`from_json`: a document ``{"header": {...}, "rows": [...]}`` that
  keeps numbers numbers (fractions exact) and reads back into the same frame.
- :func:`to_csv`: one numeric column per quantity and axis, loadable with ``pandas.read_csv``.
- :func:`to_markdown`: a GitHub pipe table, written without ``tabulate``.

>>> import pandas as pd
>>> from fractions import Fraction
>>> frame = pd.DataFrame({"j_h": [1, Fraction(1, 2)], "r_h": [3, 5]},
...                      index=pd.Index(["conv", "up"], name="node"))
>>> print(to_csv(frame), end="")
node,j_h,j_h_exact,r_h
conv,1.0,1,3
up,0.5,1/2,5
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from enum import Enum
from fractions import Fraction
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["from_json", "to_csv", "to_json", "to_markdown"]

INDEX_NAME = "node"
MISSING_MARKDOWN = "--"
_AXIS_COLUMN = re.compile(r"^r_([^_]+)$")
_FRACTION_KEYS = frozenset({"value", "exact", "fraction"})


# ---------------------------------------------------------------------------------------------
# One plain form for every cell: Python scalars, tuples, frozensets, dicts; None when missing.
# ---------------------------------------------------------------------------------------------


def plain(value: Any) -> Any:
    """A cell as plain Python: the one form every writer below starts from.

    Missing values (``None``, NaN, ``pd.NA``, ``pd.NaT``) become ``None``; numpy scalars and
    arrays become Python numbers and (nested) tuples; lists become tuples, sets frozensets;
    enums their ``.value``; a ``Fraction`` with denominator 1 an ``int``; dicts keep their
    shape with ``str`` keys. Anything else is returned unchanged.

    >>> plain([np.int64(3), Fraction(4, 1), float("nan"), {"holes"}])
    (3, 4, None, frozenset({'holes'}))
    """
    if value is None or value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, Enum):
        return plain(value.value)
    if isinstance(value, np.ndarray):
        return plain(value.tolist())
    if isinstance(value, np.generic):
        return plain(value.item())
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, Fraction):
        return int(value) if value.denominator == 1 else value
    if isinstance(value, float):
        return None if math.isnan(value) else float(value)
    if isinstance(value, str):
        return str(value)
    if isinstance(value, (tuple, list)):
        return tuple(plain(v) for v in value)
    if isinstance(value, (set, frozenset)):
        return frozenset(plain(v) for v in value)
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    return value


def _is_number(value: Any) -> bool:
    """True for a plain number (bools count: they are ints)."""
    return isinstance(value, (int, float, Fraction))


def _is_pair(value: Any) -> bool:
    """True for a plain ``(lo, hi)`` pair of numbers (either end may be missing)."""
    return (
        isinstance(value, tuple)
        and len(value) == 2
        and all(v is None or _is_number(v) for v in value)
        and any(v is not None for v in value)
    )


def _is_vector(value: Any) -> bool:
    """True for a flat tuple of numbers (``None`` allowed), e.g. a shape or a per-axis size."""
    return (
        isinstance(value, tuple)
        and all(v is None or _is_number(v) for v in value)
        and any(v is not None for v in value)
    )


def _is_bounds(value: Any) -> bool:
    """True for a tuple of per-axis ``(lo, hi)`` pairs (an axis may be ``None``)."""
    return (
        isinstance(value, tuple)
        and all(v is None or _is_pair(v) for v in value)
        and any(v is not None for v in value)
    )


def _is_text_collection(value: Any) -> bool:
    """True for a tuple or frozenset of strings (flags, reason codes); empty ones count."""
    return isinstance(value, (tuple, frozenset)) and all(isinstance(v, str) for v in value)


def _ordered(items: Iterable[Any], is_set: bool) -> list[Any]:
    """The items of a collection in output order: sets sorted, sequences as they are."""
    items = list(items)
    if not is_set:
        return items
    try:
        return sorted(items)
    except TypeError:
        return sorted(items, key=repr)


# ---------------------------------------------------------------------------------------------
# JSON
# ---------------------------------------------------------------------------------------------


def json_value(value: Any) -> Any:
    """A cell (or header entry) as a JSON-ready value.

    ints stay ints, floats numbers (NaN, None and infinities become ``null``), a ``Fraction``
    ``{"value": 0.5, "exact": "1/2", "fraction": [1, 2]}`` (denominator 1: a plain int),
    tuples/lists/arrays lists, sets sorted lists, enums their ``.value``, dicts dicts; anything
    else ``str(value)``.

    >>> json_value(((0, 6), None, Fraction(1, 2)))
    [[0, 6], None, {'value': 0.5, 'exact': '1/2', 'fraction': [1, 2]}]
    """
    return _json_plain(plain(value))


def _json_plain(value: Any) -> Any:
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Fraction):
        return {
            "value": float(value),
            "exact": str(value),
            "fraction": [value.numerator, value.denominator],
        }
    if isinstance(value, tuple):
        return [_json_plain(v) for v in value]
    if isinstance(value, frozenset):
        return [_json_plain(v) for v in _ordered(value, is_set=True)]
    if isinstance(value, dict):
        return {k: _json_plain(v) for k, v in value.items()}
    return str(value)


def to_json(frame: pd.DataFrame, header: Mapping[str, Any]) -> str:
    """The table as a JSON document ``{"header": {...}, "rows": [...]}``.

    ``header`` is the caller's (input shape, mode, versions, summary counts) and is converted
    like the cells. Each row is ``{"node": <index>, <column>: <value>, ...}`` with values as
    :func:`json_value` gives them. :func:`from_json` reads the document back.

    >>> frame = pd.DataFrame({"j_h": [Fraction(1, 2)], "centre": [((0, 6), None)]},
    ...                      index=pd.Index(["up"], name="node"))
    >>> doc = json.loads(to_json(frame, {"input_shape": (1, 3, 9, 9)}))
    >>> doc["header"], doc["rows"][0]["centre"], doc["rows"][0]["j_h"]["exact"]
    ({'input_shape': [1, 3, 9, 9]}, [[0, 6], None], '1/2')
    """
    columns = [str(c) for c in frame.columns]
    if INDEX_NAME in columns:
        raise ValueError(f"column '{INDEX_NAME}' clashes with the row key for the index")
    rows = [
        {INDEX_NAME: json_value(name), **dict(zip(columns, map(json_value, values)))}
        for name, values in zip(frame.index, frame.itertuples(index=False, name=None))
    ]
    document = {"header": json_value(dict(header)), "rows": rows}
    return json.dumps(document, indent=2, allow_nan=False) + "\n"


def _from_json_value(value: Any) -> Any:
    """A parsed JSON value back as Python: fraction objects ``Fraction``, lists tuples."""
    if isinstance(value, list):
        return tuple(_from_json_value(v) for v in value)
    if isinstance(value, dict):
        if set(value) == _FRACTION_KEYS:
            numerator, denominator = value["fraction"]
            return Fraction(numerator, denominator)
        return {k: _from_json_value(v) for k, v in value.items()}
    return value


def from_json(text: str) -> tuple[dict[str, Any], pd.DataFrame]:
    """Read a :func:`to_json` document back: ``(header, frame)`` with the index named ``node``.

    Fraction objects come back as ``Fraction``, lists as tuples (sets therefore as sorted
    tuples, enums as their values), ``null`` as missing.

    >>> frame = pd.DataFrame({"j_h": [1, Fraction(2, 3)]}, index=pd.Index(["a", "b"], name="node"))
    >>> header, back = from_json(to_json(frame, {"mode": "local"}))
    >>> header, back["j_h"].tolist()
    ({'mode': 'local'}, [1, Fraction(2, 3)])
    """
    document = json.loads(text)
    header = _from_json_value(document.get("header", {}))
    rows = document.get("rows", [])
    columns: dict[str, None] = {}
    for row in rows:
        columns.update(dict.fromkeys(k for k in row if k != INDEX_NAME))
    index = pd.Index([_from_json_value(row.get(INDEX_NAME)) for row in rows], name=INDEX_NAME)
    data = {c: [_from_json_value(row.get(c)) for row in rows] for c in columns}
    return header, pd.DataFrame(data, index=index, columns=list(columns))


# ---------------------------------------------------------------------------------------------
# CSV
# ---------------------------------------------------------------------------------------------


def axis_names(frame: pd.DataFrame) -> tuple[str, ...]:
    """The frame's spatial axis names: ``frame.attrs["axes"]``, else from its ``r_<a>`` columns.

    Returns ``()`` when neither says; callers then name axes ``a0, a1, ...``.

    >>> axis_names(pd.DataFrame(columns=["r_h", "r_h_num", "r_w"]))
    ('h', 'w')
    """
    axes = frame.attrs.get("axes")
    if axes:
        return tuple(str(a) for a in axes)
    found = (_AXIS_COLUMN.match(str(c)) for c in frame.columns)
    return tuple(m.group(1) for m in found if m)


def _names_for(count: int, axes: Sequence[str]) -> list[str]:
    """Axis names for ``count`` axes: the frame's when the count fits, else ``a0, a1, ...``."""
    return list(axes) if len(axes) == count else [f"a{i}" for i in range(count)]


def _column_kind(cells: Sequence[Any]) -> str:
    """What a column of plain cells holds: bounds, vector, text, scalar or other."""
    present = [c for c in cells if c is not None]
    if not present:
        return "scalar"
    if all(_is_bounds(c) for c in present):
        return "bounds"
    if all(_is_vector(c) for c in present):
        return "vector"
    if all(_is_text_collection(c) for c in present):
        return "text"
    if not any(isinstance(c, (tuple, frozenset, dict)) for c in present):
        return "scalar"
    return "other"


def _item(cell: Any, i: int) -> Any:
    """Item ``i`` of a tuple cell, ``None`` where the cell or the item is missing."""
    return cell[i] if cell is not None and i < len(cell) else None


def _split_bounds(name: str, cells: Sequence[Any], axes: Sequence[str]) -> list[tuple[str, list]]:
    """``centre`` -> ``centre_lo_h, centre_hi_h, centre_lo_w, centre_hi_w``."""
    count = max(len(c) for c in cells if c is not None)
    out = []
    for i, axis in enumerate(_names_for(count, axes)):
        pairs = [_item(c, i) for c in cells]
        out.append((f"{name}_lo_{axis}", [_item(p, 0) for p in pairs]))
        out.append((f"{name}_hi_{axis}", [_item(p, 1) for p in pairs]))
    return out


def _split_vector(name: str, cells: Sequence[Any], axes: Sequence[str]) -> list[tuple[str, list]]:
    """Per-axis tuples -> ``<col>_<axis>``; other flat tuples (``shape``) -> ``<col>_0, ...``."""
    lengths = {len(c) for c in cells if c is not None}
    count = max(lengths)
    per_axis = bool(axes) and lengths == {len(axes)}
    suffixes = list(axes) if per_axis else [str(i) for i in range(count)]
    return [(f"{name}_{s}", [_item(c, i) for c in cells]) for i, s in enumerate(suffixes)]


def _join_text(cell: Any) -> Any:
    """A collection of strings as one ``;``-joined string (sets sorted)."""
    if cell is None:
        return None
    return ";".join(_ordered(cell, is_set=isinstance(cell, frozenset)))


def _csv_columns(name: str, cells: Sequence[Any], axes: Sequence[str]) -> list[tuple[str, list]]:
    """The CSV columns one source column becomes (before fractions are turned into floats)."""
    kind = _column_kind(cells)
    if kind == "bounds":
        return _split_bounds(name, cells, axes)
    if kind == "vector":
        return _split_vector(name, cells, axes)
    if kind == "text":
        return [(name, [_join_text(c) for c in cells])]
    if kind == "other":
        return [(name, [None if c is None else str(c) for c in cells])]
    return [(name, list(cells))]


def _exact_text(value: Any) -> Any:
    """The exact text of a number for an ``_exact`` column (``1/2``, ``3``, ``1.5``)."""
    return None if value is None else str(value)


def _with_floats(name: str, values: list) -> list[tuple[str, list]]:
    """Fractions as floats, plus ``<name>_exact`` when the column holds a non-integer one."""
    if not any(isinstance(v, Fraction) for v in values):
        return [(name, values)]
    floats = [float(v) if _is_number(v) else v for v in values]
    return [(name, floats), (f"{name}_exact", [_exact_text(v) for v in values])]


def to_csv(frame: pd.DataFrame) -> str:
    """The table as CSV: one column per quantity and axis, numbers as numbers.

    Column rules (by cell type, never by column name):

    - tuples of per-axis ``(lo, hi)`` pairs (``centre``): ``centre_lo_h, centre_hi_h,
      centre_lo_w, centre_hi_w`` (axes from ``frame.attrs["axes"]``, else the ``r_<a>``
      columns, else ``a0, a1, ...``);
    - flat tuples of numbers as long as the axes: ``<col>_<axis>``; other flat tuples
      (``shape``): ``<col>_0, <col>_1, ...``;
    - ``Fraction`` -> float, with ``<col>_exact`` (``"1/2"``) after any column holding a
      non-integer one;
    - collections of strings (flags, reason codes): one ``;``-joined string;
    - missing values: empty.

    The result loads with ``pandas.read_csv(io.StringIO(text), index_col=0)`` into int64 /
    float64 columns for every number.

    >>> frame = pd.DataFrame({"shape": [(1, 4, 7, 7)], "centre": [((0, 6), None)],
    ...                       "r_h": [7], "r_w": [7]}, index=pd.Index(["conv"], name="node"))
    >>> print(to_csv(frame), end="")
    node,shape_0,shape_1,shape_2,shape_3,centre_lo_h,centre_hi_h,centre_lo_w,centre_hi_w,r_h,r_w
    conv,1,4,7,7,0,6,,,7,7
    """
    axes = axis_names(frame)
    columns: dict[str, list] = {}
    for name in frame.columns:
        cells = [plain(v) for v in frame[name]]
        for split_name, values in _csv_columns(str(name), cells, axes):
            for out_name, out_values in _with_floats(split_name, values):
                if out_name in columns:
                    raise ValueError(f"CSV column '{out_name}' would be written twice")
                columns[out_name] = out_values
    flat = pd.DataFrame(columns, index=frame.index, columns=list(columns), dtype=object)
    return flat.to_csv(index_label=frame.index.name or INDEX_NAME, lineterminator="\n")


# ---------------------------------------------------------------------------------------------
# Markdown
# ---------------------------------------------------------------------------------------------


def _format_number(value: int | float | Fraction) -> str:
    """``3``, ``1/2``, ``1.5``, ``0.666667``: integral floats without ``.0``."""
    if isinstance(value, float):
        if math.isfinite(value) and value.is_integer():
            return str(int(value))
        text = repr(value)
        return text if len(text) <= 10 else f"{value:.6g}"
    return str(value)


def _format_pair(pair: Any) -> str:
    if pair is None:
        return MISSING_MARKDOWN
    return "..".join(markdown_cell(v) for v in pair)


def markdown_cell(value: Any) -> str:
    """A cell as readable text (before escaping).

    >>> [markdown_cell(v) for v in (Fraction(1, 2), 3.0, None, (7, 7), ((0, 6), (0, 6)),
    ...                             frozenset({"holes", "global"}))]
    ['1/2', '3', '--', '7×7', '0..6, 0..6', 'global, holes']
    """
    value = plain(value)
    if value is None:
        return MISSING_MARKDOWN
    if isinstance(value, bool) or isinstance(value, str):
        return str(value)
    if _is_number(value):
        return _format_number(value)
    if _is_vector(value):
        return "×".join(markdown_cell(v) for v in value)
    if _is_bounds(value):
        return ", ".join(_format_pair(v) for v in value)
    if isinstance(value, (tuple, frozenset)):
        items = _ordered(value, is_set=isinstance(value, frozenset))
        return ", ".join(markdown_cell(v) for v in items)
    return str(value)


def _escape(text: str) -> str:
    """Text safe inside a pipe-table cell: pipes escaped, line breaks as spaces."""
    return text.replace("|", "\\|").replace("\r\n", " ").replace("\n", " ").replace("\r", " ")


def _is_numeric_column(values: Iterable[Any]) -> bool:
    """True when every present cell is a number (not a bool): such columns align right."""
    present = [v for v in (plain(x) for x in values) if v is not None]
    return bool(present) and all(_is_number(v) and not isinstance(v, bool) for v in present)


def _row(cells: Iterable[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def to_markdown(frame: pd.DataFrame) -> str:
    """The table as a GitHub pipe table, written by hand (no ``tabulate``).

    The first column is the index (header ``node``); numeric columns align right. Cells read
    as :func:`markdown_cell` gives them, pipes escaped as ``\\|``.

    >>> frame = pd.DataFrame({"j_h": [Fraction(1, 2)], "first": [((0, 6), (0, 6))]},
    ...                      index=pd.Index(["up"], name="node"))
    >>> print(to_markdown(frame), end="")
    | node | j_h | first |
    | --- | ---: | --- |
    | up | 1/2 | 0..6, 0..6 |
    """
    header = [_escape(str(frame.index.name or INDEX_NAME))]
    header += [_escape(str(c)) for c in frame.columns]
    rule = ["---"] + [
        "---:" if _is_numeric_column(frame.iloc[:, i]) else "---" for i in range(frame.shape[1])
    ]
    lines = [_row(header), _row(rule)]
    for name, values in zip(frame.index, frame.itertuples(index=False, name=None)):
        cells = [markdown_cell(name)] + [markdown_cell(v) for v in values]
        lines.append(_row(_escape(c) for c in cells))
    return "\n".join(lines) + "\n"
