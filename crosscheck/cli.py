"""The ``rfcheck`` command line tool (also ``python -m crosscheck``).

Exit status: 0 when what was printed is complete and true (``compare``: every row compared
and agreeing; ``report``: every row computed; a query: its answer found), 1 when analytic and
numeric disagree or some row could not be computed or compared (the footer says which and
why), or a query has no answer (``reach``: no map is that large), 2 on bad usage or a model
rfcheck refuses (the message names what is wrong and the way out), 3 on an internal failure
(a bug: the message asks for a report; ``--debug`` shows the traceback).

This module imports neither torch nor the analysis: ``rfcheck --help``, ``--version`` and
``list`` answer at once; the other commands import them when they run (``commands``).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence

EXIT_OK, EXIT_DISAGREE, EXIT_USAGE, EXIT_INTERNAL = 0, 1, 2, 3

MODEL_HELP = (
    "zoo name (e.g. alexnet; see rfcheck list), torchvision:NAME, path/to/file.py:factory or "
    "package.module:factory (factory: a function without arguments returning an nn.Module)"
)
INPUT_HELP = (
    "input size, channels first, batch implied, e.g. 3x227x227 (1-D: 1x128, 3-D: 1x16x64x64); "
    "default: the zoo entry's, else 3x224x224"
)
NODE_HELP = (
    "feature map: a node name or a module path, as rfcheck nodes MODEL lists them "
    "(a module path stands for the node its module outputs); default: the model output"
)
PROGRESS_HELP = (
    "no progress bar (a bar shows on standard error only when it is a terminal, once the "
    "command has run 2 seconds)"
)
DESCRIPTION = "Receptive fields of PyTorch models, analytic and numeric, cross-checked."
EPILOG = """\
start with:
  rfcheck list                                      the zoo's models
  rfcheck nodes resnet18                            the feature maps you can name
  rfcheck bounds alexnet --node conv2 --unit 0,0    the pixels one unit sees

exit status:
  0  what was printed is complete and true (compare: every row agrees; a query: answered)
  1  analytic and numeric disagree, some row could not be computed or compared, or a query
     has no answer (the output says which and why)
  2  bad usage, or a model rfcheck refuses (the message says what to change)
  3  internal error: a bug in rfcheck (rerun with --debug and report the traceback)
"""
TABLE_OR_JSON = ("table", "json")
FORMAT_HELP = "table: text for people (default); json: a document for programs"
TABLE_FORMAT_HELP = (
    "table: text for people (default); csv: one numeric column per quantity and axis; "
    "json: a header and typed rows; markdown: a pipe table"
)


class _Parser(argparse.ArgumentParser):
    """argparse that exits with status 2 and one line of error, as the other usage errors do."""

    def error(self, message: str):  # type: ignore[override]
        self.exit(EXIT_USAGE, f"rfcheck: error: {message} (see rfcheck --help)\n")


def positive_int(text: str) -> int:
    """An argparse type: a whole number above 0."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1 or str(value) != text.strip().lstrip("+"):
        raise argparse.ArgumentTypeError(f"'{text}' is not a positive whole number")
    return value


def positive_gb(text: str) -> int:
    """An argparse type: a number of gigabytes above 0, as bytes."""
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"'{text}' is not a positive number of gigabytes")
    return int(value * 2**30)


def _memory_argument(sub: argparse.ArgumentParser) -> None:
    sub.add_argument(
        "--max-memory-gb", type=positive_gb, default=None, metavar="GB", dest="memory_budget",
        help="memory one real-weights pass of the effective field may take (default 1.5); a pass estimated above it is refused",
    )


def _model_arguments(sub: argparse.ArgumentParser) -> None:
    sub.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks of errors")
    sub.add_argument("model", help=MODEL_HELP)
    sub.add_argument("--input", metavar="CxHxW", help=INPUT_HELP)
    sub.add_argument("--no-progress", action="store_true", help=PROGRESS_HELP)


def _nodes_argument(sub: argparse.ArgumentParser) -> None:
    sub.add_argument(
        "--nodes", metavar="A,B,...",
        help="only these feature maps (comma-separated node names or module paths; see rfcheck nodes MODEL)",
    )


class _RefusedNodes(argparse.Action):
    """``plot --nodes``: a plot draws one feature map; say so instead of ignoring it."""

    def __call__(self, parser, namespace, values, option_string=None):
        parser.error("plot draws one feature map: name it with --node NAME (--nodes is for report and compare)")


def _query(sub, name: str, help_text: str, node: bool = True) -> argparse.ArgumentParser:
    query = sub.add_parser(name, help=help_text, description=help_text)
    _model_arguments(query)
    if node:
        query.add_argument("--node", help=NODE_HELP)
    query.add_argument("--format", choices=TABLE_OR_JSON, default="table", help=FORMAT_HELP)
    return query


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="rfcheck", description=DESCRIPTION, epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks of errors")
    parser.add_argument("--version", action="version", version=f"rfcheck {_version()}", help="show rfcheck's version and exit")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser, metavar="command")

    listing = sub.add_parser("list", help="the zoo's models, with their default inputs", description="The zoo's models (random weights, no download), with their default inputs.")
    listing.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks of errors")
    listing.add_argument("--format", choices=TABLE_OR_JSON, default="table", help=FORMAT_HELP)

    nodes = sub.add_parser("nodes", help="the feature maps of a model: names to pass to --node / --nodes", description="The feature maps of MODEL in graph order, with op and output shape: the names --node and --nodes take, and the module paths that stand for them.")
    _model_arguments(nodes)
    nodes.add_argument("--format", choices=TABLE_OR_JSON, default="table", help=FORMAT_HELP)

    report = sub.add_parser("report", help="layer-by-layer receptive-field table (analytic; the probe measures ops without a rule)")
    _model_arguments(report)
    _nodes_argument(report)
    report.add_argument("--format", choices=("table", "csv", "json", "markdown"), default="table", help=TABLE_FORMAT_HELP)
    report.add_argument("--output", metavar="FILE", help="write to FILE instead of standard output")
    report.add_argument("--analytic-only", action="store_true", help="no probe: fail on ops without a rule")
    report.add_argument("--depth", type=positive_int, metavar="N", help="fold nodes deeper than N module levels into their module's output row (as torchinfo's depth)")
    report.add_argument("--changes-only", action="store_true", help="only the rows whose field differs from the row above (hides BN, activations, reshapes that pass the field on)")

    compare = sub.add_parser("compare", help="analytic vs numeric, every feature map, with reasons")
    _model_arguments(compare)
    _nodes_argument(compare)
    compare.add_argument("--format", choices=("table", "csv", "json", "markdown"), default="table", help=TABLE_FORMAT_HELP)
    compare.add_argument("--output", metavar="FILE", help="write to FILE instead of standard output")
    _mode_argument(compare)
    compare.add_argument("--max-size", type=positive_int, default=4096, metavar="PIXELS", help="largest input side the probe may grow to (default 4096)")

    plot = sub.add_parser("plot", help="draw the receptive field (grid on an image, heat map, growth, effective RF, exact support)")
    _model_arguments(plot)
    plot.add_argument("--nodes", action=_RefusedNodes, metavar="A,B,...", help="refused: a plot draws one feature map; name it with --node")
    plot.add_argument(
        "--out", required=True, metavar="FILE.png",
        help="image file to write; its extension picks the format (png, pdf, svg, ...), none: .png is added",
    )
    plot.add_argument(
        "--kind", choices=("grid", "heatmap", "growth", "erf", "support"), default="grid",
        help="grid: three units' fields on a test card or --image (default); heatmap: the probe's gradient map of one unit; "
        "growth: r and j map by map; erf: the effective field's mass profile; support: the exact set of pixels "
        "the centre unit sees, with its box",
    )
    plot.add_argument("--node", help="feature map to draw (one), a node name or module path (default: the last one with several units)")
    plot.add_argument("--no-numeric", action="store_true", help="analytic only (no probe)")
    plot.add_argument(
        "--image", metavar="FILE",
        help="--kind grid: draw on this picture (PNG; JPEG and others need Pillow), resized (nearest) to the input's height x width",
    )
    plot.add_argument("--corners", action="store_true", help="--kind support: also draw the first and last units' supports")
    _memory_argument(plot)

    bounds = _query(sub, "bounds", "the input pixels one unit of a feature map sees: its field, unclipped, and what it sees of the input")
    bounds.add_argument("--unit", metavar="I,J", help="the unit, one index per axis, e.g. 3,5 (default: the centre unit)")

    sees = _query(sub, "sees", "which units of a feature map see one input pixel (exact, holes and branches included)")
    sees.add_argument("--pixel", required=True, metavar="Y,X", help="the input pixel, one index per axis from 0, e.g. 100,50")

    reach = _query(sub, "reach", "the first feature map (graph order) whose field reaches a size on every axis", node=False)
    reach.add_argument("--size", required=True, type=positive_int, metavar="PIXELS", help="the field size to reach, in input pixels")

    fits = _query(sub, "fits", "the smallest input whose centre unit of a feature map sees its whole field, unclipped by the border")
    fits.add_argument("--max-size", type=positive_int, default=4096, metavar="PIXELS", help="largest input side to try (default 4096)")

    erf = _query(sub, "erf", "the effective receptive field (real weights, random inputs) of a map's centre unit: radii holding 50, 90 and 99 percent of the gradient")
    erf.add_argument("--samples", type=positive_int, default=16, metavar="N", help="random inputs to average over (default 16)")
    erf.add_argument("--seed", type=int, default=0, help="seeds the random inputs and the zoo model's random weights (default 0)")
    _mode_argument(erf)
    erf.add_argument("--max-size", type=positive_int, default=4096, metavar="PIXELS", help="largest input side the probe may grow to (default 4096)")
    _memory_argument(erf)
    return parser


def _mode_argument(sub: argparse.ArgumentParser) -> None:
    sub.add_argument(
        "--mode", choices=("local", "full"), default="local",
        help="local (default): global side paths (squeeze-excite, attention, norm statistics) are flagged, "
        "not followed; full: followed, so such fields are the whole input",
    )


def _version() -> str:
    from . import __version__

    return __version__


def main(argv: Sequence[str] | None = None) -> int:
    started = time.monotonic()  # the progress bar's clock: importing torch counts too
    parser = build_parser()
    args = parser.parse_args(argv)
    args.started = started
    try:
        if args.command == "list":
            return list_models(args.format)
        from .commands import run

        return run(args)
    except Exception as e:
        return _failure(e, args)


def list_models(fmt: str) -> int:
    """``rfcheck list``: every zoo model with its default input and description (no torch)."""
    from .loading import zoo_catalogue

    catalogue = zoo_catalogue()
    if fmt == "json":
        rows = [{"name": m.name, "input": _input_text(m.input_shape), "input_shape": list(m.input_shape), "description": m.description} for m in catalogue]
        sys.stdout.write(json.dumps({"header": {"versions": {"rfcheck": _version()}}, "rows": rows}, indent=2) + "\n")
        return EXIT_OK
    width = max(len(m.name) for m in catalogue)
    input_width = max(len(_input_text(m.input_shape)) for m in catalogue)
    lines = [f"{len(catalogue)} zoo models (random weights, no download); MODEL for every command:"]
    lines += [f"  {m.name:<{width}}  {_input_text(m.input_shape):<{input_width}}  {m.description}" for m in catalogue]
    lines.append("Your own: path/to/file.py:factory or package.module:factory; torchvision:NAME if installed.")
    sys.stdout.write("\n".join(lines) + "\n")
    return EXIT_OK


def _input_text(shape: Sequence[int]) -> str:
    """(1, 3, 227, 227) -> '3x227x227', as --input takes it."""
    return "x".join(str(s) for s in shape[1:])


def _failure(error: Exception, args: argparse.Namespace) -> int:
    """One line on standard error and the exit status: 1 for a field that could not be computed,
    2 for the user's mistakes and refusals, 3 for rfcheck's own bugs."""
    if getattr(args, "debug", False):
        raise error
    if _is_rf_error(error, "NotComputed"):
        print(f"rfcheck: incomplete: {error}", file=sys.stderr)
        return EXIT_DISAGREE
    if _is_rf_error(error, "RFError") or isinstance(error, (ValueError, FileNotFoundError, ImportError, KeyError, TypeError)):
        message = str(error.args[0]) if isinstance(error, KeyError) and error.args else str(error)
        print(f"rfcheck: error: {_cli_way_out(message, error, args)}", file=sys.stderr)
        return EXIT_USAGE
    print(
        f"rfcheck: internal error: {type(error).__name__}: {error}. This is a bug in rfcheck; "
        "rerun with --debug for the traceback and report it.",
        file=sys.stderr,
    )
    return EXIT_INTERNAL


def _is_rf_error(error: Exception, class_name: str) -> bool:
    """Whether ``error`` is an ``rfarith.errors.<class_name>`` (without importing rfarith, which
    imports torch: an error raised before rfarith was imported cannot be one)."""
    errors = sys.modules.get("rfarith.errors")
    return errors is not None and isinstance(error, getattr(errors, class_name))


def _cli_way_out(message: str, error: Exception, args: argparse.Namespace) -> str:
    """The message with the ways out a command line user can take."""
    model = getattr(args, "model", None)
    if _is_rf_error(error, "UnknownNode") and model:
        listing = f"rfcheck nodes {model}" + (f" --input {args.input}" if getattr(args, "input", None) else "")
        message = message.replace(
            "List them all with rfarith.node_names(model, input_shape).",
            f"List them all with {listing} (in Python: rfarith.node_names(model, input_shape)).",
        )
    if _is_rf_error(error, "ShapeError"):
        from .loading import batch_hint

        message += batch_hint(getattr(args, "input", None))
    return message


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
