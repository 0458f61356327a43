"""What each ``rfcheck`` subcommand does, separate from argument parsing."""

from __future__ import annotations

import argparse
import json
import sys
import time
from fractions import Fraction
from pathlib import Path

import pandas as pd

import rfarith

from .compare import compare, render
from .hybrid import hybrid
from .loading import load_model, parse_input

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
            report[name]  # unknown names: UnknownNode with close names
    table = report.table if not nodes else report.table.loc[nodes]
    text = report.render() if not nodes else _subset_text(report, nodes)
    _emit(text if args.format == "table" else format_frame(table, args.format), args.output)
    return EXIT_OK


def _subset_text(report: rfarith.Report, nodes: list[str]) -> str:
    keep = set(nodes) | {report.rows[0].name}
    subset = rfarith.Report([r for r in report.rows if r.name in keep], {}, report.input_shape, report.title)
    return subset.render()


def _compare(model, shape, title, nodes, args) -> int:
    progress = None if args.no_progress else ProgressBar()
    frame = compare(model, shape, nodes, mode=args.mode, max_size=args.max_size, progress=progress)
    text = render(frame, title) if args.format == "table" else format_frame(frame, args.format)
    _emit(text, args.output)
    return EXIT_DISAGREE if frame.attrs["summary"]["disagree"] else EXIT_OK


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
    return EXIT_OK


def format_frame(frame: pd.DataFrame, fmt: str) -> str:
    """A table as csv, json (records) or markdown, with tuples and fractions as plain text."""
    flat = frame.copy()
    for column in flat.columns:
        flat[column] = [_plain(v) for v in flat[column]]
    if fmt == "csv":
        return flat.to_csv()
    if fmt == "json":
        records = json.loads(flat.reset_index().to_json(orient="records"))
        return json.dumps(records, indent=2) + "\n"
    return flat.to_markdown() + "\n"


def _plain(value):
    if isinstance(value, Fraction):
        return str(value)
    if isinstance(value, tuple):
        if all(isinstance(v, int) for v in value):
            return "x".join(map(str, value))
        return str(value)
    return value


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
