"""What each ``rfcheck`` subcommand does, separate from argument parsing."""

from __future__ import annotations

import argparse
from pathlib import Path

import rfarith

from .loading import load_model, parse_input


def run(args: argparse.Namespace) -> int:
    model, default_shape, title = load_model(args.model)
    shape = parse_input(args.input) if args.input else default_shape
    if args.command == "report":
        report = rfarith.analyze(model, shape, title=title)
        _emit(_format(report.render(), report.table, args.format), args.output)
        return 0
    raise ValueError(f"unknown command {args.command}")


def _format(text: str, table, fmt: str) -> str:
    if fmt == "table":
        return text
    frame = table.copy()
    frame["shape"] = ["x".join(map(str, s)) for s in frame["shape"]]
    for col in frame.columns:
        if col.startswith("j_"):
            frame[col] = [str(v) for v in frame[col]]
    if fmt == "csv":
        return frame.to_csv()
    if fmt == "json":
        return frame.reset_index().to_json(orient="records", indent=2) + "\n"
    return frame.to_markdown() + "\n"


def _emit(text: str, output: str | None) -> None:
    if output:
        Path(output).write_text(text)
    else:
        print(text, end="")
