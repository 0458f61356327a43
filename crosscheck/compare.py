"""Analytic against numeric, feature map by feature map: exact pixel sets decide.

For each node, the units of :func:`crosscheck.verdict.window` are compared as exact sets of
input pixels at the user's input: what rfarith says each sees (clipped to that input) against
the probe's support. Where the field does not fit the user's input (the probe's search grew the
input until it did), the same is done again at the input the probe grew to, with rfarith
analysed again there. A row agrees iff every compared set is equal. The probe's fitted ``j``,
``r``, ``start`` stay in the table as information; they never decide. Every row carries reason
codes (:class:`crosscheck.Reason`) and their words; no row is ever dropped.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import pandas as pd
from torch import nn

import rfarith
import rfnumeric
from rfarith.errors import RFError, UnknownNode
from rfarith.field import FLAG_ORDER, ReceptiveField
from rfarith.value import APPROXIMATE, MAX_TERMS
from rfnumeric.search import field_hint

from . import numeric
from .hybrid import hybrid
from .reasons import DISAGREE, NOT_COMPARED, Reason, status
from .table import render, summary
from .verdict import Mismatch, bounds_of, mismatches, window

UNIT_NAMES = ("first", "centre", "last")

# Why the probe could not grow the input past the user's (ProbeError.kind -> the words).
CANNOT_GROW = {
    "too_wide": "the field is wider than the largest input the probe may use (max_size={max_size})",
    "size_dependent": "the field changes with the input size (adaptive pooling, a resize to a fixed size or with align_corners=True)",
    "forward": "the model rejects a larger input",
}


def compare(
    model: nn.Module,
    input_shape: Sequence[int],
    nodes: Iterable[str] | None = None,
    mode: str = "local",
    max_size: int = 4096,
    progress: Callable[[int, int, str], None] | None = None,
) -> pd.DataFrame:
    """Analytic vs numeric receptive fields, one row per feature map, in graph order.

    Columns: ``op``; per axis ``n_<a>``, ``j_<a>``, ``r_<a>``, ``start_<a>`` (analytic) and
    the same with ``_num`` (the probe's map size at the user's input, and its fitted summary:
    information only); ``first`` / ``centre`` / ``last`` (what those units see of the user's
    input, per axis, analytic) and ``first_num`` / ... (measured); ``flags`` and
    ``flags_num`` (tuples of flag words) and ``global_via``; ``units_compared`` and
    ``compared_at`` (the input sizes the sets were compared at); ``agree``, ``status``
    (agree, disagree, not_compared), ``reason`` (a tuple of :class:`Reason` codes) and
    ``reason_text``. ``df.attrs`` holds ``summary`` (counts that add up to ``nodes``),
    ``input_shape`` and ``mode``; :func:`render` prints the table.

    >>> import torch.nn as nn, crosscheck
    >>> net = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2), nn.ReLU(), nn.Conv2d(8, 8, 3))
    >>> df = crosscheck.compare(net, (1, 3, 32, 32))
    >>> bool(df["agree"].all()), df.attrs["summary"]["agree"]
    (True, 3)
    """
    if mode not in ("local", "full"):
        raise ValueError(f"mode {mode!r} must be 'local' or 'full'")
    report = hybrid(model, input_shape, mode)  # the analysis, with black boxes measured
    shape = tuple(report.input_shape)
    names = _select(report, nodes)
    rows = [_Row(report, name) for name in names]
    if report.traced:
        _measure(model, shape, report, rows, mode, max_size, progress)
    records = [row.record(mode, max_size) for row in rows]
    frame = pd.DataFrame.from_records(records).set_index("node") if records else pd.DataFrame()
    frame.attrs["summary"] = summary(frame)
    frame.attrs["input_shape"] = shape
    frame.attrs["mode"] = mode
    frame.attrs["axes"] = report.axes
    return frame


class _Row:
    """What is known of one node while it is compared."""

    def __init__(self, report: rfarith.Report, name: str) -> None:
        self.name = name
        self.report_row = report.row(name)
        self.traced = report.traced
        self.fitted: rfnumeric.ProbeResult | Exception | None = None
        self.at_user: numeric.UnitsAt | Exception | None = None
        self.compared: list[tuple[int, ...]] = []
        self.units_compared = 0
        self.mismatches: list[Mismatch] = []
        self.size_differs: list[str] = []
        self.grown_note = ""
        self.causal_beside = False  # mode 'full': a recurrence beside another path (not compared)

    @property
    def field(self) -> ReceptiveField | None:
        return self.report_row.field

    # ---- the record -------------------------------------------------------------------------
    def record(self, mode: str, max_size: int) -> dict[str, Any]:
        """The row of the table. A numeric-only row's values are the probe's (``_num``)."""
        rf = self.field
        analytic = rf if self.traced else None
        fitted = self.fitted if isinstance(self.fitted, rfnumeric.ProbeResult) else None
        summary_num = fitted if self.traced else rf
        at_user = self.at_user if isinstance(self.at_user, numeric.UnitsAt) else None
        n_num = at_user.n if at_user else (rf.n if rf is not None and not self.traced else None)
        record: dict[str, Any] = {"node": self.name, "op": self.report_row.op}
        for i, a in enumerate(_axes_of(self)):
            for quantity in ("n", "j", "r", "start"):
                record[f"{quantity}_{a}"] = getattr(analytic, quantity)[i] if analytic else math.nan
            record[f"n_{a}_num"] = n_num[i] if n_num else math.nan
            for quantity in ("j", "r", "start"):
                record[f"{quantity}_{a}_num"] = getattr(summary_num, quantity)[i] if summary_num else math.nan
        units = _named_units(analytic) if analytic else {}
        for key in UNIT_NAMES:
            record[key] = analytic.real_bounds(units[key]) if analytic else None
            record[f"{key}_num"] = bounds_of(at_user.supports.get(units[key])) if at_user and units else None
        record["flags"] = _flag_words(analytic.flags) if analytic else ()
        record["flags_num"] = _flag_words(summary_num.flags) if summary_num else ()
        record["global_via"] = ", ".join(rf.global_via) if rf is not None else ""
        record["units_compared"] = self.units_compared
        record["compared_at"] = tuple(self.compared)
        codes, texts = self.reasons(mode, max_size)
        record["status"] = status(codes)
        record["agree"] = record["status"] == "agree"
        record["reason"] = tuple(c.value for c in codes)
        record["reason_text"] = "; ".join(texts)
        return record

    def reasons(self, mode: str, max_size: int) -> tuple[list[Reason], list[str]]:
        """The codes of this row and their words, in one order: disagreements first."""
        found: list[tuple[Reason, str]] = []
        rf, row = self.field, self.report_row
        if not self.traced:
            why = getattr(row, "reason", "") or ""
            found.append((Reason.NUMERIC_ONLY, "torch.fx cannot trace the model: measured by the probe only" + (f" ({why})" if why else "")))
            return _split(found)
        if isinstance(self.at_user, UnknownNode):
            found.append((Reason.ANALYTIC_ONLY, f"the probe cannot address '{self.name}' without torch.fx (not a module call): analytic only"))
        elif isinstance(self.at_user, Exception):
            code = Reason.ANALYTIC_ONLY if getattr(self.at_user, "kind", "") == "layout" else Reason.PROBE_FAILED
            found.append((code, f"the probe could not measure the units at the user's input: {_first_line(self.at_user)}"))
        found += [(Reason.SIZE_DIFFERS, text) for text in self.size_differs]
        if self.causal_beside:
            found.append((Reason.CAUSAL_BESIDE, f"mode 'full': a unidirectional recurrence (via {rf.global_via[0]}) meets another path on the way; rfarith keeps the local field there, so each unit's full set is not known (compare with mode 'local')"))
        if self.mismatches:
            underflow = isinstance(self.fitted, rfnumeric.ProbeResult) and "underflow" in self.fitted.flags
            code = Reason.UNDERFLOW if underflow else Reason.PIXELS_DIFFER
            more = f" (+{len(self.mismatches) - 1} more units)" if len(self.mismatches) > 1 else ""
            found.append((code, self.mismatches[0].text() + more))
        if rf is not None and APPROXIMATE in rf.flags:
            found.append((Reason.APPROXIMATE_SHAPE, f"the analytic support's shape was given up past {MAX_TERMS} rectangles: bounds compared, pixel sets not"))
        if row.source != "rule":
            found.append((Reason.MEASURED_OP, f"no analytic rule for {row.op}: measured by the probe as a black box"))
        if rf is not None and (rf.global_via or any(f.is_global for f in rf.fields) and not rf.broadcast_axes):
            via = rf.global_via[0] if rf.global_via else rf.node
            if "causal" in rf.flags:
                found.append((Reason.GLOBAL, f"global: a unidirectional recurrence (via {via}), each of whose units sees the sequence up to its own step"))
            else:
                seen = "the whole input is compared" if _whole_input(rf, mode) else "every unit sees the whole input"
                found.append((Reason.GLOBAL, f"global: {seen} (via {via})"))
        if self.grown_note:
            found.append((Reason.USER_INPUT_ONLY, self.grown_note))
        elif isinstance(self.fitted, rfnumeric.ProbeResult) and self.fitted.growth_refused:
            found.append((Reason.USER_INPUT_ONLY, CANNOT_GROW["forward"] + ": compared at the user's input only"))
        elif isinstance(self.fitted, Exception) and not isinstance(self.at_user, Exception):
            kind = getattr(self.fitted, "kind", "")
            if kind in CANNOT_GROW:
                found.append((Reason.USER_INPUT_ONLY, CANNOT_GROW[kind].format(max_size=max_size) + ": compared at the user's input only"))
            else:
                found.append((Reason.NO_FIT, f"the probe fitted no j, r, start: {_first_line(self.fitted)}"))
        return _split(found)


def _split(found: list[tuple[Reason, str]]) -> tuple[list[Reason], list[str]]:
    order = {DISAGREE: 0, NOT_COMPARED: 1}
    found.sort(key=lambda pair: order.get(pair[0].kind, 2))
    return [code for code, _ in found], [text for _, text in found]


def _first_line(error: Exception) -> str:
    text = str(error.args[0]) if isinstance(error, KeyError) and error.args else str(error)
    return text.strip().splitlines()[0] if text.strip() else type(error).__name__


def _axes_of(row: _Row) -> tuple[str, ...]:
    if row.field is not None:
        return row.field.axes
    return rfarith.axis_names(len(row.report_row.shape) - 2)


def _flag_words(flags: frozenset[str]) -> tuple[str, ...]:
    return tuple(f for f in (*FLAG_ORDER, *sorted(flags - set(FLAG_ORDER))) if f in flags)


def _named_units(rf: ReceptiveField) -> dict[str, tuple[int, ...]]:
    return {
        "first": tuple(0 for _ in rf.n),
        "centre": tuple(n // 2 for n in rf.n),
        "last": tuple(n - 1 for n in rf.n),
    }


# ---- measuring ------------------------------------------------------------------------------
def _measure(model, shape, report, rows: list[_Row], mode: str, max_size: int, progress) -> None:
    """Fill every row's probe answers and compare its sets: at the user's input, then at the
    inputs the probe grew to."""
    prober = numeric.Prober(model, shape, mode, max_size)
    plans = {row.name: (field_hint(row.field.r, row.field.j), frozenset(a for a, p in enumerate(row.field.phases) if p > 1)) for row in rows}
    fitted = prober.fields(plans, progress)
    by_name = {row.name: row for row in rows}
    for row in rows:
        row.fitted = fitted.get(row.name)
    local = {row.name: _measured_local(row, mode) for row in rows}
    user = tuple(shape[2:])
    wanted = {row.name: _wanted(row.field) for row in rows}
    for name, found in prober.units(user, wanted, local):
        row = by_name[name]
        row.at_user = found
        if isinstance(found, numeric.UnitsAt):
            _judge(row, row.field, found, mode)
    grown: dict[tuple[int, ...], list[_Row]] = {}
    for row in rows:
        sizes = _grown_sizes(row, user)
        if sizes is not None and isinstance(row.at_user, numeric.UnitsAt) and not row.size_differs:
            grown.setdefault(sizes, []).append(row)
    for sizes, group in grown.items():
        _compare_grown(model, shape, sizes, group, prober, local, mode)


def _measured_local(row: _Row, mode: str) -> bool:
    fitted = row.fitted
    return fitted.mode == "local" if isinstance(fitted, rfnumeric.ProbeResult) else mode == "local"


def _wanted(rf: ReceptiveField) -> list[tuple[int, ...]]:
    return sorted(set(window(rf)) | set(_named_units(rf).values()))


def _grown_sizes(row: _Row, user: tuple[int, ...]) -> tuple[int, ...] | None:
    """The input the probe's search settled on, where it is not the user's."""
    fitted = row.fitted
    if not isinstance(fitted, rfnumeric.ProbeResult):
        return None
    sizes = tuple(fitted.input_shape[2:])
    return sizes if sizes != user else None


def _compare_grown(model, shape, sizes, group: list[_Row], prober: numeric.Prober, local, mode: str) -> None:
    """rfarith analysed again at ``sizes`` and the windows of ``group`` compared there."""
    grown_shape = (shape[0], shape[1], *sizes)
    size_text = "×".join(map(str, sizes))
    try:
        report = hybrid(model, grown_shape, mode)
    except (RFError, ValueError, RuntimeError) as e:
        for row in group:
            row.grown_note = f"the field does not fit the user's input, and rfarith cannot analyse the input {size_text} the probe grew to ({_first_line(e)}): compared at the user's input only"
        return
    fields = {}
    for row in group:
        if row.name in report:
            fields[row.name] = report[row.name]
        else:
            row.grown_note = f"'{row.name}' is not a node at the input {size_text} the probe grew to: compared at the user's input only"
    wanted = {name: window(rf, corners=False) for name, rf in fields.items()}
    by_name = {row.name: row for row in group}
    for name, found in prober.units(sizes, wanted, local):
        row = by_name[name]
        if isinstance(found, numeric.UnitsAt):
            _judge(row, fields[name], found, mode)
        else:
            row.grown_note = f"the probe could not measure the units at the input {size_text} it grew to ({_first_line(found)}): compared at the user's input only"


def _judge(row: _Row, rf: ReceptiveField, found: numeric.UnitsAt, mode: str) -> None:
    """Compare one measurement of ``row``'s units with ``rf`` (analysed at the same input)."""
    if tuple(found.n) != tuple(rf.n):
        size = "×".join(map(str, found.sizes))
        row.size_differs.append(f"the map has {_sizes_text(rf.n)} units (analytic) vs {_sizes_text(found.n)} (numeric) at input {size}")
        return
    whole = _whole_input(rf, mode)
    if whole and "causal" in rf.flags:  # a causal path left out: its sets are not the whole input
        row.causal_beside = True
        return
    row.compared.append(tuple(found.sizes))
    row.units_compared += len(found.supports)
    row.mismatches += mismatches(rf, found.supports, whole=whole)


def _whole_input(rf: ReceptiveField, mode: str) -> bool:
    """Whether mode 'full' compares ``rf``'s units with the whole input: where a merge left a
    path through a global op out of the local field (that path lets every unit see the whole
    input), not where every path passes the one global op (each term global, or causal, along
    some axis): those terms are the whole field, and a recurrence or a mean along one axis
    leaves the other axes local."""
    one_chain = len(rf.global_via) == 1 and all(any(f.is_global for f in term) for term in rf.terms)
    return mode == "full" and bool(rf.global_via) and not one_chain


def _sizes_text(n: Sequence[int]) -> str:
    return "×".join(map(str, n))


def _select(report: rfarith.Report, nodes: Iterable[str] | None) -> list[str]:
    if nodes is None:  # a traced report's output rows repeat earlier nodes; a measured one's do not
        return [row.name for row in report.rows[1:] if row.op != "output" or not report.traced]
    chosen = set(nodes)
    for name in chosen:
        report.row(name)  # raises UnknownNode with close names
    return [row.name for row in report.rows if row.name in chosen]  # in graph order


# ---- the assertion ----------------------------------------------------------------
def assert_agree(
    model: nn.Module,
    input_shape: Sequence[int],
    nodes: Iterable[str] | None = None,
    mode: str = "local",
    max_size: int = 4096,
    allow: Iterable[Reason | str] = (),
) -> pd.DataFrame:
    """Fail (AssertionError with the table) unless analytic and numeric agree on every node.

    A row agrees when every compared unit sees the same pixels on both sides. A row that could
    not be compared (its reason codes say why) fails too, unless each of its codes of kind
    ``not_compared`` is in ``allow`` (e.g. ``allow={crosscheck.Reason.NUMERIC_ONLY}`` for a
    model torch.fx cannot trace). Returns the comparison table.

    >>> import torch.nn as nn, crosscheck
    >>> _ = crosscheck.assert_agree(nn.Sequential(nn.Conv2d(1, 2, 3, dilation=2), nn.MaxPool2d(2)), (1, 1, 24, 24))
    """
    allowed = {Reason(code) for code in allow}
    frame = compare(model, input_shape, nodes, mode, max_size)
    if frame.empty:
        return frame

    def fails(codes) -> bool:
        kinds = [Reason(c) for c in codes]
        return any(c.kind == DISAGREE for c in kinds) or any(c.kind == NOT_COMPARED and c not in allowed for c in kinds)

    failing = frame[[fails(codes) for codes in frame["reason"]]]
    if len(failing):
        codes = sorted({c for row in failing["reason"] for c in row if Reason(c).kind == NOT_COMPARED})
        hint = f"\nRows not compared ({', '.join(codes)}) pass with allow={{{', '.join('crosscheck.Reason.' + Reason(c).name for c in codes)}}}." if codes else ""
        raise AssertionError(
            f"analytic and numeric receptive fields do not agree on {len(failing)} of {len(frame)} nodes:\n"
            + render(failing, type(model).__name__)
            + hint
        )
    return frame
