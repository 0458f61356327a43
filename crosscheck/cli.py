"""The ``rfcheck`` command line tool (also ``python -m crosscheck``).

Exit status: 0 when what was printed is complete and true (``compare``: every row compared
and agreeing; ``report``: every row computed), 1 when analytic and numeric disagree or some
row could not be computed or compared (the footer says which and why), 2 on bad usage or a
model rfcheck refuses (the message names what is wrong and the way out), 3 on an internal
failure (a bug: the message asks for a report; ``--debug`` shows the traceback).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from rfarith.errors import RFError

EXIT_OK, EXIT_DISAGREE, EXIT_USAGE, EXIT_INTERNAL = 0, 1, 2, 3

MODEL_HELP = "zoo name (e.g. alexnet), torchvision:NAME, path/to/file.py:factory or package.module:factory"


class _Parser(argparse.ArgumentParser):
    """argparse that exits with status 2 and one line of error, as the other usage errors do."""

    def error(self, message: str):  # type: ignore[override]
        self.exit(EXIT_USAGE, f"rfcheck: error: {message} (see rfcheck --help)\n")


def _common(sub: argparse.ArgumentParser) -> None:
    sub.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks of errors")
    sub.add_argument("model", help=MODEL_HELP)
    sub.add_argument("--input", metavar="CxHxW", help="input size, channels first, batch implied, e.g. 3x227x227 (default: the zoo entry's, else 3x224x224)")
    sub.add_argument("--nodes", metavar="A,B,...", help="only these nodes (comma-separated qualified names)")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="rfcheck", description="Receptive fields of PyTorch models, analytic and numeric, cross-checked.")
    parser.add_argument("--debug", action="store_true", help="show tracebacks of errors")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    report = sub.add_parser("report", help="layer-by-layer receptive-field table (analytic; the probe measures ops without a rule)")
    _common(report)
    report.add_argument("--format", choices=("table", "csv", "json", "markdown"), default="table")
    report.add_argument("--output", metavar="FILE", help="write to FILE instead of standard output")
    report.add_argument("--analytic-only", action="store_true", help="no probe: fail on ops without a rule")

    compare = sub.add_parser("compare", help="analytic vs numeric, every feature map, with reasons")
    _common(compare)
    compare.add_argument("--format", choices=("table", "csv", "json", "markdown"), default="table")
    compare.add_argument("--output", metavar="FILE", help="write to FILE instead of standard output")
    compare.add_argument("--mode", choices=("local", "full"), default="local", help="local: global side paths flagged, not followed")
    compare.add_argument("--max-size", type=int, default=4096, help="largest input side the probe may use (default 4096)")
    compare.add_argument("--no-progress", action="store_true", help="no progress bar")

    plot = sub.add_parser("plot", help="draw the receptive field (grid on an image, heat map, growth, effective RF)")
    _common(plot)
    plot.add_argument("--out", required=True, metavar="FILE.png", help="image file to write")
    plot.add_argument("--kind", choices=("grid", "heatmap", "growth", "erf"), default="grid")
    plot.add_argument("--node", help="feature map to draw (default: the last one with several units)")
    plot.add_argument("--no-numeric", action="store_true", help="analytic only (no probe)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        from .commands import run

        return run(args)
    except (RFError, ValueError, FileNotFoundError, ImportError, KeyError, TypeError) as e:
        if getattr(args, "debug", False):
            raise
        message = str(e.args[0]) if isinstance(e, KeyError) and e.args else str(e)
        print(f"rfcheck: error: {message}", file=sys.stderr)
        return EXIT_USAGE
    except Exception as e:  # a bug of rfcheck's, not the user's
        if getattr(args, "debug", False):
            raise
        print(
            f"rfcheck: internal error: {type(e).__name__}: {e}. This is a bug in rfcheck; "
            "rerun with --debug for the traceback and report it.",
            file=sys.stderr,
        )
        return EXIT_INTERNAL


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
