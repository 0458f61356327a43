"""The ``rfcheck`` command line tool (also ``python -m crosscheck``)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from rfarith.errors import RFError

EXIT_OK, EXIT_DISAGREE, EXIT_USAGE = 0, 1, 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rfcheck",
        description="Receptive fields of PyTorch models, analytic and numeric, cross-checked.",
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    sub = parser.add_subparsers(dest="command", required=True)
    report = sub.add_parser("report", help="analytic layer-by-layer receptive-field table")
    report.add_argument("model", help="zoo name (alexnet), torchvision:NAME, file.py:factory or package.module:factory")
    report.add_argument("--input", help="input size, channels first, e.g. 3x227x227 (default: the zoo's)")
    report.add_argument("--format", choices=("table", "csv", "json", "markdown"), default="table")
    report.add_argument("--output", help="write to this file instead of standard output")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        from .commands import run

        return run(args)
    except (RFError, ValueError, FileNotFoundError, ImportError) as e:
        if args.debug:
            raise
        print(f"rfcheck: error: {e}", file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
