"""Analytic against numeric, feature map by feature map, with a reason for every difference.

For each node: the analytic field (rfarith, at the user's input) and the probe's (rfnumeric, on
the smallest input that holds the analytic field: its size is the probe's size hint) are
compared on ``n``, ``j``, ``r``, ``start`` and the flags ``global``, ``holes``, ``nonuniform``;
then the first, centre and last units are measured at the user's input itself, and what each
sees of that input is compared pixel for pixel with rfarith's exact border fields. Equality is
exact: no tolerance anywhere.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
from torch import nn

import rfarith
import rfnumeric
from rfarith.errors import UnknownNode
from rfarith.field import ReceptiveField
from rfnumeric.fitting import MAX_PERIOD

from . import numeric
from .hybrid import hybrid

COMPARED_FLAGS = ("global", "holes", "nonuniform")
UNIT_NAMES = ("first", "centre", "last")


# Why a part of the comparison could not be made: ProbeError.kind -> the reason, in plain words.
SKIP_REASONS = {
    "too_wide": "field wider than the largest input the probe may use (max_size={max_size}): r, j, start not measured",
    "size_dependent": "the field grows with the input (adaptive pooling, a resize to a fixed size or with align_corners=True): r, j, start compared only through the units at the given input",
    "layout": "the probe cannot locate this map's units (tokens with a class token in front): analytic only",
    "forward": "the model rejects the larger input the field needs: r, j, start not measured",
}


@dataclass
class Verdict:
    """The outcome for one node: what differs, what could not be compared, and why.

    ``differences`` are exact mismatches; ``skipped`` says which comparisons could not be made
    and why (a stated, legitimate reason); ``notes`` are facts about the field (global). A
    difference is explained only by a probe underflow (the probe's support may then be short).
    """

    differences: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    numeric_only: bool = False
    underflow: bool = False

    @property
    def agree(self) -> bool:
        return not self.differences and not self.skipped and not self.numeric_only

    @property
    def unexplained(self) -> bool:
        return bool(self.differences) and not self.underflow

    def text(self) -> str:
        parts = self.notes + self.skipped
        if self.underflow:
            parts.append("probe underflow")
        if self.unexplained:
            parts.append("unexplained: " + "; ".join(self.differences))
        elif self.differences:
            parts.append("(" + "; ".join(self.differences) + ")")
        return ", ".join(parts)


def compare(
    model: nn.Module,
    input_shape: Sequence[int],
    nodes: Iterable[str] | None = None,
    mode: str = "local",
    max_size: int = 4096,
    progress: Callable[[int, int, str], None] | None = None,
) -> pd.DataFrame:
    """Analytic vs numeric receptive fields, one row per feature map, in graph order.

    Columns: ``op``, per axis ``n_<a>``, ``j_<a>``, ``r_<a>``, ``start_<a>`` (analytic) and the
    same with ``_num`` (numeric), ``first`` / ``centre`` / ``last`` (analytic bounds of those
    units in the actual input, per axis) and ``first_num`` / ... (measured), ``flags`` and
    ``flags_num``, ``agree`` (exact equality) and ``reason`` (why a row differs or was skipped).
    ``df.attrs["summary"]`` holds the counts; :func:`render` prints the table.

    >>> import torch.nn as nn, crosscheck
    >>> net = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2), nn.ReLU(), nn.Conv2d(8, 8, 3))
    >>> df = crosscheck.compare(net, (1, 3, 32, 32))
    >>> bool(df["agree"].all()), df.attrs["summary"]["agree"]
    (True, 3)
    """
    report = hybrid(model, input_shape, mode)  # the analysis, with black boxes measured
    shape = report.input_shape
    names = _select(report, nodes)
    plans = {name: (_size_hint(report[name]), list(_units(report[name]).values())) for name in names}
    periodic = {name: frozenset(a for a, p in enumerate(report[name].phases) if p > 1) for name in names}
    measured = numeric.measure_nodes(model, shape, plans, mode, max_size, progress, periodic=periodic)
    records = [_record(report, name, measured[name], max_size) for name in names]
    frame = pd.DataFrame.from_records(records).set_index("node") if records else pd.DataFrame()
    frame.attrs["summary"] = summary(frame)
    frame.attrs["input_shape"] = shape
    frame.attrs["mode"] = mode
    return frame


def _select(report: rfarith.Report, nodes: Iterable[str] | None) -> list[str]:
    if nodes is None:
        return [row.name for row in report.rows[1:] if row.op != "output"]
    chosen = set(nodes)
    for name in chosen:
        report[name]  # raises UnknownNode with close names
    return [row.name for row in report.rows if row.name in chosen]  # in graph order


def _size_hint(rf: ReceptiveField) -> tuple[int, ...]:
    """The input the probe should start from, per axis: the field and two jumps on either side,
    so that the units beside the centre it measures lie inside the input too (next to a reflect
    or replicate border, a unit's field folds back and no longer shows the jump)."""
    return tuple(r + 4 * math.ceil(j) for r, j in zip(rf.r, rf.j))


def _units(rf: ReceptiveField) -> dict[str, tuple[int, ...]]:
    return {
        "first": tuple(0 for _ in rf.n),
        "centre": tuple(n // 2 for n in rf.n),
        "last": tuple(n - 1 for n in rf.n),
    }


def _record(report: rfarith.Report, name: str, measured: numeric.NodeMeasurement, max_size: int) -> dict[str, Any]:
    row = report.row(name)
    rf = row.field
    record: dict[str, Any] = {"node": name, "op": row.op}
    verdict = Verdict()
    for i, a in enumerate(rf.axes):
        record.update({f"n_{a}": rf.n[i], f"j_{a}": rf.j[i], f"r_{a}": rf.r[i], f"start_{a}": rf.start[i]})
    units = _units(rf)
    for key, unit in units.items():
        record[key] = rf.real_bounds(unit)
    record["flags"] = rf.describe_flags()
    if rf.global_via or (any(f.is_global for f in rf.fields) and not rf.broadcast_axes):
        via = rf.global_via[0] if rf.global_via else rf.node
        verdict.notes.append(f"global: every unit sees the whole input (via {via})")
    if row.source != "rule":
        verdict.numeric_only = True
        verdict.notes.append(f"no analytic rule for {row.op}: measured by the probe" if report.traced else "module not traceable: numeric only")
    probe = measured.field
    if isinstance(probe, UnknownNode):
        verdict.skipped.append(f"the probe cannot address '{name}' without torch.fx (not a module call): analytic only")
        record["agree"], record["reason"] = False, verdict.text()
        return record
    if isinstance(probe, Exception):
        _skip_or_differ(verdict, probe, "the field", max_size)
        probe = None
    if probe is not None:
        long_periods = _long_periods(rf)
        long_differ = False
        unresolved = _unresolved(probe)
        if unresolved:
            size, axes = probe.input_shape[2:], ", ".join(unresolved)
            verdict.skipped.append(
                f"too few units whole inside input {size} along {axes} for the probe to fit j, r and start (the rest cut by the border): compared unit by unit only"
            )
        broadcast_differs, rounded = False, []
        for i, a in enumerate(rf.axes):
            record.update({f"j_{a}_num": probe.j[i], f"r_{a}_num": probe.r[i], f"start_{a}_num": probe.start[i]})
            if a in unresolved:
                continue
            differ = [
                f"{quantity}_{a} {_fmt(mine)} vs {_fmt(theirs)}"
                for quantity, mine, theirs in (("j", rf.j[i], probe.j[i]), ("r", rf.r[i], probe.r[i]), ("start", rf.start[i], probe.start[i]))
                if not _same(mine, theirs)
            ]
            if differ and a in long_periods:
                long_differ = True
            elif differ and a in rf.broadcast_reach:
                broadcast_differs = True
            elif differ and "rounding" in rf.flags:
                rounded.append(a)
            else:
                verdict.differences += differ
        flags_num = probe.flags
        record["flags_num"] = probe.describe_flags()
        for flag in COMPARED_FLAGS:
            if (flag in rf.flags) != (flag in flags_num):
                if flag in ("holes", "nonuniform") and long_periods:
                    long_differ = True  # read from a window shorter than the period
                    continue
                if flag in ("holes", "nonuniform") and "rounding" in rf.flags:
                    rounded.append(flag)
                    continue
                if rf.broadcast_axes and (flag in ("holes", "nonuniform") or flag == "global" and not rf.global_via):
                    broadcast_differs = True
                    continue
                side = "analytic" if flag in rf.flags else "numeric"
                verdict.differences.append(f"{flag} only {side}")
        if broadcast_differs:
            verdict.skipped.append(
                f"a map of one unit along {', '.join(rf.broadcast_axes)} is broadcast or resized at this input (every unit sees the same pixels through it); on the larger input the probe measures, that map has more units and the field is another one: j, r, start, holes and nonuniform compared unit by unit only"
            )
        if rounded:
            verdict.skipped.append(
                f"rounding: PyTorch's float rounding of a resize's index map leaves the field irregular, so its summary differs ({', '.join(rounded)}): compared unit by unit only"
            )
        if long_differ:
            verdict.skipped.append(
                f"the field repeats only every {_periods_text(long_periods)}, more than the {MAX_PERIOD} units the probe resolves: j, r, start, holes and nonuniform compared unit by unit only"
            )
        verdict.underflow = "underflow" in flags_num
    if measured.units_error is not None:
        _skip_or_differ(verdict, measured.units_error, "the first, centre and last units", max_size)
    for i, a in enumerate(rf.axes):
        record[f"n_{a}_num"] = measured.n[i] if measured.n else None
        if measured.n and measured.n[i] != rf.n[i]:
            verdict.differences.append(f"n_{a} {rf.n[i]} vs {measured.n[i]}")
    by_unit = {s.unit: s for s in measured.units}
    for key, unit in units.items():
        support = by_unit.get(unit)
        record[f"{key}_num"] = support.bounds if support else None
        if support is not None and rf.real_seen(unit) != support.pixels:
            verdict.differences.append(f"{key} unit {unit}: {rf.real_bounds(unit)} vs {support.bounds}")
    record["agree"] = verdict.agree
    record["reason"] = verdict.text()
    return record


def _long_periods(rf: ReceptiveField) -> dict[str, int]:
    """Axes (name: period) along which the analytic period is longer than the probe can
    resolve: the probe's j, r, start and its holes / nonuniform flags there summarise a window
    of units shorter than one period."""
    return {a: p for a, p in zip(rf.axes, rf.phases) if p > MAX_PERIOD}


def _unresolved(probe: rfnumeric.ProbeResult) -> list[str]:
    """Axes along which the probe's map has several units but no j: too few of them lay whole
    inside the input it could use (see ``rfnumeric.fitting.AxisFit``)."""
    return [a for a, n, j in zip(probe.axes, probe.n, probe.j) if n > 1 and isinstance(j, float) and math.isnan(j)]


def _periods_text(periods: dict[str, int]) -> str:
    return ", ".join(f"{p} units along {a}" for a, p in periods.items())


def _skip_or_differ(verdict: Verdict, error: Exception, what: str, max_size: int) -> None:
    """A probe failure with a known, legitimate cause skips the comparison with that reason;
    any other failure is a difference nobody explained."""
    kind = getattr(error, "kind", "other")
    reason = SKIP_REASONS.get(kind)
    if reason is None:
        verdict.differences.append(f"the probe could not measure {what}: {error}")
    elif reason.format(max_size=max_size) not in verdict.skipped:
        verdict.skipped.append(reason.format(max_size=max_size))


def _same(a, b) -> bool:
    if isinstance(a, float) and isinstance(b, float) and a != a and b != b:
        return True
    return a == b


def _fmt(value) -> str:
    return rfarith.report.format_number(value) if isinstance(value, (int, float)) or hasattr(value, "denominator") else str(value)


def summary(frame: pd.DataFrame) -> dict[str, int]:
    """Counts: nodes, agree, disagree (unexplained), explained differences, numeric-only rows."""
    if frame.empty:
        return {"nodes": 0, "agree": 0, "disagree": 0, "explained": 0, "numeric_only": 0}
    agree = int(frame["agree"].sum())
    unexplained = int(frame["reason"].str.contains("unexplained:").sum())
    numeric_only = int(frame["reason"].str.contains("measured by the probe|numeric only").sum())
    return {
        "nodes": len(frame),
        "agree": agree,
        "disagree": unexplained,
        "explained": len(frame) - agree - unexplained - numeric_only,
        "numeric_only": numeric_only,
    }


def render(frame: pd.DataFrame, title: str = "") -> str:
    """The comparison as a text table: analytic | numeric per quantity, agreement, reason."""
    from rfarith.report import per_axis_text

    axes = [c[2:] for c in frame.columns if c.startswith("r_") and not c.endswith("_num")]
    headers = ["Node", "Op", "n", "j", "r", "start", "agree", "Reason"]
    rows = []
    for name, row in frame.iterrows():
        cells = [str(name), str(row["op"])]
        for quantity in ("n", "j", "r", "start"):
            mine = per_axis_text([row[f"{quantity}_{a}"] for a in axes])
            theirs = [row.get(f"{quantity}_{a}_num") for a in axes]
            theirs_text = "--" if any(v is None or (isinstance(v, float) and v != v and quantity != "start") for v in theirs) else per_axis_text(theirs)
            cells.append(mine if mine == theirs_text else f"{mine} | {theirs_text}")
        cells.append("yes" if row["agree"] else "NO")
        cells.append(str(row["reason"]) or "--")
        rows.append(cells)
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]

    def fmt(cells: list[str]) -> str:
        return "  ".join(c.ljust(w) if i in (0, 1, 6, 7) else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths))).rstrip()

    counts = frame.attrs.get("summary") or summary(frame)
    shape = frame.attrs.get("input_shape")
    head = f"Analytic vs numeric receptive fields{': ' + title if title else ''}"
    if shape:
        head += f"  (input {'×'.join(map(str, shape))}, mode {frame.attrs.get('mode', 'local')})"
    line = "=" * min(sum(widths) + 2 * (len(widths) - 1), 160)
    out = [head, "a | b: analytic | numeric where they differ; n at the input, r/j/start of an interior unit", line, fmt(headers), "-" * len(line)]
    out += [fmt(r) for r in rows]
    out += [
        line,
        f"{counts['nodes']} nodes, {counts['agree']} agree, {counts['disagree']} disagree, "
        f"{counts['explained']} differ for a stated reason, {counts['numeric_only']} numeric-only",
    ]
    return "\n".join(out) + "\n"


def assert_agree(
    model: nn.Module,
    input_shape: Sequence[int],
    nodes: Iterable[str] | None = None,
    mode: str = "local",
    max_size: int = 4096,
) -> pd.DataFrame:
    """Fail (AssertionError with the table) unless analytic and numeric agree on every node.

    A difference with a stated, legitimate reason (the field is wider than any input the probe
    may use; a probe underflow) does not fail it; any unexplained difference does. Returns the
    comparison table.

    >>> import torch.nn as nn, crosscheck
    >>> _ = crosscheck.assert_agree(nn.Sequential(nn.Conv2d(1, 2, 3, dilation=2), nn.MaxPool2d(2)), (1, 1, 24, 24))
    """
    frame = compare(model, input_shape, nodes, mode, max_size)
    failing = frame[frame["reason"].str.contains("unexplained:")] if not frame.empty else frame
    if len(failing):
        raise AssertionError(
            f"analytic and numeric receptive fields disagree on {len(failing)} of {len(frame)} nodes:\n"
            + render(failing, type(model).__name__)
        )
    return frame
