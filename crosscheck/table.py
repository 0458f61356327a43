"""The comparison table for people: counts read from the reason codes, a footer that says
whether what is shown is complete and true, and the text table ``rfcheck compare`` prints."""

from __future__ import annotations

import math
from collections.abc import Callable

import pandas as pd

from .reasons import DISAGREE, NOT_COMPARED, Reason, status

SUMMARY_KEYS = ("nodes", "agree", "disagree", "not_compared")


def summary(frame: pd.DataFrame) -> dict[str, int]:
    """Counts of rows by status, read from the reason codes: ``agree + disagree +
    not_compared == nodes``, never negative."""
    if frame.empty:
        return dict.fromkeys(SUMMARY_KEYS, 0)
    statuses = [status(codes) for codes in frame["reason"]]
    counts = {"nodes": len(frame), "agree": statuses.count("agree"), "disagree": statuses.count(DISAGREE), "not_compared": statuses.count(NOT_COMPARED)}
    return counts


def reason_counts(frame: pd.DataFrame) -> dict[str, int]:
    """How many rows carry each reason code."""
    counts: dict[str, int] = {}
    for codes in frame.get("reason", []):
        for code in codes:
            counts[code] = counts.get(code, 0) + 1
    return counts


def footer(frame: pd.DataFrame) -> str:
    """The summary line: the counts, and why rows were not compared."""
    counts = frame.attrs.get("summary") or summary(frame)
    text = f"{counts['nodes']} nodes: {counts['agree']} agree, {counts['disagree']} disagree, {counts['not_compared']} not compared"
    missing = {code: n for code, n in reason_counts(frame).items() if Reason(code).kind == NOT_COMPARED}
    if missing:
        text += " (" + ", ".join(f"{n} {code}" for code, n in missing.items()) + ")"
    if counts["disagree"] or counts["not_compared"]:
        text += "; INCOMPLETE OR DISAGREEING: see the reasons above"
    return text


def render(frame: pd.DataFrame, title: str = "") -> str:
    """The comparison as a text table: analytic | numeric per quantity, agreement, reasons."""
    from rfarith.report import per_axis_text

    axes = frame.attrs.get("axes") or [c[2:] for c in frame.columns if c.startswith("r_") and not c.endswith("_num")]
    headers = ["Node", "Op", "n", "j", "r", "start", "agree", "Reason"]
    rows = []
    for name, row in frame.iterrows():
        cells = [str(name), str(row["op"])]
        for quantity in ("n", "j", "r", "start"):
            mine = _cell([row[f"{quantity}_{a}"] for a in axes], per_axis_text)
            theirs = _cell([row.get(f"{quantity}_{a}_num") for a in axes], per_axis_text)
            cells.append(mine if mine == theirs else f"{mine} | {theirs}")
        cells.append({"agree": "yes", DISAGREE: "NO", NOT_COMPARED: "--"}[row["status"]])
        cells.append(str(row["reason_text"]) or "--")
        rows.append(cells)
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]

    def fmt(cells: list[str]) -> str:
        return "  ".join(c.ljust(w) if i in (0, 1, 6, 7) else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths))).rstrip()

    shape = frame.attrs.get("input_shape")
    head = f"Analytic vs numeric receptive fields{': ' + title if title else ''}"
    if shape:
        head += f"  (input {'×'.join(map(str, shape))}, mode {frame.attrs.get('mode', 'local')})"
    line = "=" * min(sum(widths) + 2 * (len(widths) - 1), 160)
    legend = "a | b: analytic | numeric where they differ (numeric j/r/start: the probe's fit, information only); agree: every compared unit sees the same pixels"
    out = [head, legend, line, fmt(headers), "-" * len(line)]
    out += [fmt(r) for r in rows]
    out += [line, footer(frame)]
    return "\n".join(out) + "\n"


def _cell(values: list, text: Callable) -> str:
    if any(v is None or (isinstance(v, float) and math.isnan(v)) for v in values):
        return "--"
    return text(values)
