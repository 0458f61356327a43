"""What each ``rfcheck`` subcommand does, separate from argument parsing."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import pandas as pd

import rfarith
from rfarith.field import FLAG_ORDER

from . import formats
from .compare import compare, render
from .hybrid import hybrid
from .loading import load_model, parse_input
from .reasons import Reason

EXIT_OK, EXIT_DISAGREE = 0, 1


def run(args: argparse.Namespace) -> int:
    model, default_shape, title = load_model(args.model)
    shape = parse_input(args.input) if args.input is not None else default_shape
    nodes = [n.strip() for n in args.nodes.split(",") if n.strip()] if args.nodes else None
    if args.command == "report":
        return _report(model, shape, title, nodes, args)
    if args.command == "compare":
        return _compare(model, shape, title, nodes, args)
    return _plot(model, shape, title, args)


def _report(model, shape, title, nodes, args) -> int:
    report = rfarith.analyze(model, shape, title=title) if args.analytic_only else hybrid(model, shape)
    report.title = title
    if nodes:
        for name in nodes:
            report.row(name)  # unknown names: UnknownNode with close names
    table = _report_frame(report)
    table = table if not nodes else table.loc[nodes]
    if args.format == "table":
        text = report.render() if not nodes else _subset_text(report, nodes)
    else:
        header = _header(title, report.input_shape, "local", {"complete": report.complete, "not_computed": report.missing})
        text = format_frame(table, args.format, header)
    _emit(text, args.output)
    return EXIT_OK if report.complete else EXIT_DISAGREE


def _report_frame(report: rfarith.Report) -> pd.DataFrame:
    """The report's table for machines: flags as a list of words, the global cause apart."""
    table = report.table.copy()
    table["flags"] = [tuple(f for f in FLAG_ORDER if f in row.field.flags) if row.field is not None else () for row in report.rows]
    table["global_via"] = [", ".join(row.field.global_via) if row.field is not None else "" for row in report.rows]
    table.attrs["axes"] = report.axes
    return table


def _subset_text(report: rfarith.Report, nodes: list[str]) -> str:
    keep = set(nodes) | {report.rows[0].name}
    subset = rfarith.Report([r for r in report.rows if r.name in keep], {}, report.input_shape, report.title)
    return subset.render()


def _compare(model, shape, title, nodes, args) -> int:
    progress = None if args.no_progress else ProgressBar()
    frame = compare(model, shape, nodes, mode=args.mode, max_size=args.max_size, progress=progress)
    if args.format == "table":
        text = render(frame, title)
    else:
        extra = {"summary": frame.attrs["summary"], "reasons": {r.value: {"kind": r.kind, "meaning": r.meaning} for r in Reason}}
        text = format_frame(frame, args.format, _header(title, frame.attrs["input_shape"], args.mode, extra))
    _emit(text, args.output)
    counts = frame.attrs["summary"]
    return EXIT_DISAGREE if counts["disagree"] or counts["not_compared"] else EXIT_OK


def _plot(model, shape, title, args) -> int:
    import matplotlib

    matplotlib.use("Agg")
    from . import plot

    numeric = not args.no_numeric
    if args.kind == "grid":
        figure = plot.rf_grid(model, shape, node=args.node, numeric=numeric)
    elif args.kind == "heatmap":
        figure = plot.probe_heatmap(model, shape, node=args.node)
    elif args.kind == "growth":
        figure = plot.growth(model, shape, numeric=numeric)
    else:
        figure = plot.erf_profile(model, shape, node=args.node)
    out = Path(args.out)
    if out.parent and not out.parent.exists():
        raise FileNotFoundError(f"folder '{out.parent}' for --out does not exist")
    figure.savefig(out, dpi=120)
    print(f"wrote {out}")
    problems = getattr(figure, "rfcheck_problems", [])
    for problem in problems:
        print(f"DISAGREE: {problem}")
    return EXIT_DISAGREE if problems else EXIT_OK


def _header(title: str, input_shape, mode: str, extra: dict) -> dict:
    import torch

    from . import __version__

    return {
        "model": title,
        "input_shape": list(input_shape),
        "mode": mode,
        "versions": {"rfcheck": __version__, "torch": torch.__version__},
        **extra,
    }


def format_frame(frame: pd.DataFrame, fmt: str, header: dict | None = None) -> str:
    """A table as csv, json (a header and the rows, real numbers and lists) or markdown."""
    if fmt == "csv":
        return formats.to_csv(frame)
    if fmt == "json":
        return formats.to_json(frame, header or {})
    return formats.to_markdown(frame)


def _emit(text: str, output: str | None) -> None:
    if output:
        path = Path(output)
        if path.parent and not path.parent.exists():
            raise FileNotFoundError(f"folder '{path.parent}' for --output does not exist")
        path.write_text(text)
    else:
        sys.stdout.write(text)


class ProgressBar:
    """A one-line progress bar on standard error, shown once work takes more than a moment."""

    def __init__(self, stream=None, delay: float = 1.0, width: int = 30) -> None:
        self.stream = stream or sys.stderr
        self.delay = delay
        self.width = width
        self.started = time.monotonic()
        self.shown = False

    def __call__(self, done: int, total: int, label: str) -> None:
        if not getattr(self.stream, "isatty", lambda: False)():
            return
        if not self.shown and time.monotonic() - self.started < self.delay and done < total:
            return
        self.shown = True
        filled = self.width * done // max(total, 1)
        bar = "#" * filled + "-" * (self.width - filled)
        end = "\n" if done >= total else ""
        self.stream.write(f"\rprobing [{bar}] {done}/{total} {label[:40]:<40}{end}")
        self.stream.flush()
