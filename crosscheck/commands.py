"""What each ``rfcheck`` subcommand does, separate from argument parsing."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import pandas as pd

import rfarith
from rfarith.field import FLAG_ORDER, ReceptiveField

from . import formats, queries, views
from .compare import compare, render
from .hybrid import hybrid
from .loading import load_model, parse_input
from .reasons import Reason

EXIT_OK, EXIT_DISAGREE = 0, 1


def run(args: argparse.Namespace) -> int:
    if args.command == "erf":
        import torch

        torch.manual_seed(args.seed)  # a zoo model's random weights, reproducibly
    loaded = load_model(args.model)
    if loaded.training_module:
        print(f"rfcheck: note: the model is in training mode ({loaded.training_module}); it is analysed in eval mode", file=sys.stderr)
    shape = parse_input(args.input) if args.input is not None else loaded.input_shape
    return COMMANDS[args.command](loaded.model, shape, loaded.title, args)


def requested_nodes(args: argparse.Namespace) -> list[str] | None:
    """--nodes as a list of names (None: every node)."""
    nodes = getattr(args, "nodes", None)
    return [n.strip() for n in nodes.split(",") if n.strip()] if nodes else None


def resolved(model, shape, names: list[str] | None, report: rfarith.Report | None = None) -> list[str] | None:
    """Node names with module paths replaced by the node their module outputs (torchvision's
    feature extraction takes them so). The model is analysed only if some name is a module
    path with submodules (a leaf module's path is already a node name)."""
    if not names:
        return names
    containers = {path for path, m in model.named_modules() if path and next(m.children(), None) is not None}
    if report is None and not containers.intersection(names):
        return names
    report = report if report is not None else hybrid(model, shape)
    paths = {path for path, _ in model.named_modules() if path}
    return [queries.resolve_node(name, report.names, paths) for name in names]


def _report(model, shape, title, args) -> int:
    report = rfarith.analyze(model, shape, title=title) if args.analytic_only else hybrid(model, shape)
    report.title = title
    nodes = resolved(model, shape, requested_nodes(args), report)
    if nodes:
        for name in nodes:
            report.row(name)  # unknown names: UnknownNode with close names
    nodes = nodes or _view(report, args)
    table = _report_frame(report)
    table = table if not nodes else table.loc[nodes]
    if args.format == "table":
        text = report.render() if not nodes else _subset_text(report, nodes)
    else:
        header = _header(title, report.input_shape, "local", {"complete": report.complete, "not_computed": report.missing})
        text = format_frame(table, args.format, header)
    _emit(text, args.output)
    return EXIT_OK if report.complete else EXIT_DISAGREE


def _view(report: rfarith.Report, args) -> list[str] | None:
    """The rows ``--depth`` and ``--changes-only`` keep (None: every row)."""
    if not args.depth and not args.changes_only:
        return None
    keep = {report.rows[0].name, *report.output_names.values()}
    rows = report.rows
    rows = views.folded(rows, args.depth, keep) if args.depth else rows
    rows = views.changing(rows, keep) if args.changes_only else rows
    return [row.name for row in rows]


def _report_frame(report: rfarith.Report) -> pd.DataFrame:
    """The report's table for machines: flags as a list of words, the global cause apart."""
    table = report.table.copy()
    table["flags"] = [tuple(f for f in FLAG_ORDER if f in row.field.flags) if row.field is not None else () for row in report.rows]
    table["global_via"] = [", ".join(row.field.global_via) if row.field is not None else "" for row in report.rows]
    table.attrs["axes"] = report.axes
    return table


def _subset_text(report: rfarith.Report, nodes: list[str]) -> str:
    keep = set(nodes) | {report.rows[0].name}
    outputs = {key: name for key, name in report.output_names.items() if name in keep}
    subset = rfarith.Report([r for r in report.rows if r.name in keep], outputs, report.input_shape, report.title)
    return subset.render()


def _compare(model, shape, title, args) -> int:
    nodes = resolved(model, shape, requested_nodes(args))
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

    out = plot_path(args.out)  # checked before the work
    if args.image is not None and args.kind != "grid":
        raise ValueError(f"--image draws under --kind grid only, not --kind {args.kind}")
    if args.corners and args.kind != "support":
        raise ValueError(f"--corners is for --kind support only, not --kind {args.kind}")
    image = None if args.image is None else plot.read_image(args.image, shape)
    numeric = not args.no_numeric
    node = args.node if args.node is None else resolved(model, shape, [args.node])[0]
    if args.kind == "grid":
        figure = plot.rf_grid(model, shape, node=node, numeric=numeric, image=image)
    elif args.kind == "heatmap":
        figure = plot.probe_heatmap(model, shape, node=node)
    elif args.kind == "growth":
        figure = plot.growth(model, shape, numeric=numeric)
    elif args.kind == "support":
        figure = plot.support(model, shape, node=node, corners=args.corners)
    else:
        figure = plot.erf_profile(model, shape, node=node)
    figure.savefig(out, dpi=120)
    print(f"wrote {out}")
    problems = getattr(figure, "rfcheck_problems", [])
    for problem in problems:
        print(f"DISAGREE: {problem}")
    incomplete = getattr(figure, "rfcheck_incomplete", [])
    for missing in incomplete:
        print(f"INCOMPLETE: {missing}")
    return EXIT_DISAGREE if problems or incomplete else EXIT_OK


def plot_path(text: str) -> Path:
    """The file ``--out`` names, as it will be written: ``.png`` added when it has no extension
    (matplotlib would add it silently), an extension matplotlib cannot write refused."""
    from matplotlib.figure import Figure

    out = Path(text)
    if out.parent and not out.parent.exists():
        raise FileNotFoundError(f"folder '{out.parent}' for --out does not exist")
    if not out.suffix:
        return out.with_name(out.name + ".png")
    formats = Figure().canvas.get_supported_filetypes()
    if out.suffix[1:].lower() not in formats:
        raise ValueError(f"--out {text}: matplotlib cannot write '{out.suffix}' files; use one of {', '.join('.' + f for f in sorted(formats))}")
    return out


def _nodes(model, shape, title, args) -> int:
    report = hybrid(model, shape)
    paths = [path for path, _ in model.named_modules() if path]
    aliases: dict[str, list[str]] = {}
    for path, node in queries.module_outputs(report.names, paths).items():
        aliases.setdefault(node, []).append(path)
    rows = [
        {"node": row.name, "op": row.op, "shape": list(row.shape), "module_paths": aliases.get(row.name, [])}
        for row in report.rows
    ]
    if args.format == "json":
        sys.stdout.write(formats_json({"header": _header(title, shape, "local", {}), "rows": rows}))
        return EXIT_OK
    headers = ["Node", "Op", "Output shape", "Module paths"]
    cells = [[r["node"], r["op"], "×".join(map(str, r["shape"])), ", ".join(r["module_paths"])] for r in rows]
    widths = [max(len(h), *(len(c[i]) for c in cells)) for i, h in enumerate(headers)]
    lines = [
        f"Feature maps of {title} (input {'×'.join(map(str, shape))}), in graph order: names for --node / --nodes",
        *("  ".join(c.ljust(w) for c, w in zip(cells_row, widths)).rstrip() for cells_row in [headers, *cells]),
        f"{len(rows)} feature maps; a module path in the last column names the node its module outputs",
    ]
    sys.stdout.write("\n".join(lines) + "\n")
    return EXIT_OK


def _query_report(model, shape, args) -> tuple[rfarith.Report, str | None]:
    """The report of the model and the node --node names (module paths resolved)."""
    report = hybrid(model, shape)
    node = getattr(args, "node", None)
    return report, None if node is None else resolved(model, shape, [node], report)[0]


def field_of(report: rfarith.Report, node: str | None) -> ReceptiveField:
    """The field of ``node``, or of the model output when ``node`` is None."""
    if node is not None:
        return report[node]
    outputs = report.outputs
    if len(outputs) != 1:
        listed = ", ".join(f"{key} ({rf.node})" for key, rf in outputs.items()) or "none that depends on the input"
        raise ValueError(f"the model has no single output (outputs: {listed}); name the feature map with --node")
    return next(iter(outputs.values()))


def _bounds(model, shape, title, args) -> int:
    report, node = _query_report(model, shape, args)
    rf = field_of(report, node)
    unit = None if args.unit is None else queries.parse_index(args.unit, "--unit", "unit")
    return _answer(queries.unit_bounds(rf, unit, args.node), title, shape, args)


def _sees(model, shape, title, args) -> int:
    report, node = _query_report(model, shape, args)
    pixel = queries.parse_index(args.pixel, "--pixel", "input pixel")
    return _answer(queries.units_seeing(field_of(report, node), pixel, args.node), title, shape, args)


def _reach(model, shape, title, args) -> int:
    return _answer(queries.first_reaching(hybrid(model, shape), args.size), title, shape, args)


def _fits(model, shape, title, args) -> int:
    report, node = _query_report(model, shape, args)
    node = field_of(report, node).node

    def analyse(candidate: tuple[int, ...]) -> rfarith.Report:
        return report if candidate == tuple(shape) else hybrid(model, candidate)

    fit = queries.smallest_holding_input(analyse, tuple(shape), node, args.max_size, _smallest_valid(model), args.node)
    return _answer(fit, title, shape, args)


def _smallest_valid(model):
    """The smallest input the model accepts, from rfarith (None when it cannot trace the model)."""

    def smallest(shape: tuple[int, ...]) -> tuple[int, ...] | None:
        try:
            return rfarith.smallest_input(model, rfarith.trace(model), shape)
        except rfarith.RFError:
            return None

    return smallest


def _erf(model, shape, title, args) -> int:
    import rfnumeric

    node = None if args.node is None else resolved(model, shape, [args.node])[0]
    erf = rfnumeric.effective(model, shape, node=node, n_inputs=args.samples, seed=args.seed, mode=args.mode, max_size=args.max_size)
    return _answer(queries.EffectiveRadii(erf), title, shape, args)


def _answer(answer, title: str, shape, args) -> int:
    """Print a query's answer as text or JSON; exit 0 when it is complete and true."""
    if args.format == "json":
        header = _header(title, shape, getattr(args, "mode", "local"), {"complete": answer.found})
        sys.stdout.write(formats_json({"header": header, "result": answer.as_dict()}))
    else:
        sys.stdout.write("\n".join(answer.lines()) + "\n")
    return EXIT_OK if answer.found else EXIT_DISAGREE


def formats_json(document: dict) -> str:
    return json.dumps(document, indent=2) + "\n"


COMMANDS = {
    "nodes": _nodes,
    "report": _report,
    "compare": _compare,
    "plot": _plot,
    "bounds": _bounds,
    "sees": _sees,
    "reach": _reach,
    "fits": _fits,
    "erf": _erf,
}


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
