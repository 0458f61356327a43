"""What each ``rfcheck`` subcommand does, separate from argument parsing."""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import sys
import threading
import time
import warnings
from contextlib import contextmanager
from pathlib import Path

import pandas as pd

import rfarith
from rfarith.field import FLAG_ORDER, ReceptiveField

from . import formats, queries, views
from .compare import compare, render
from .hybrid import Progress, hybrid
from .loading import load_model, parse_input
from .reasons import Reason

EXIT_OK, EXIT_DISAGREE = 0, 1
PROGRESS_DELAY = 2.0  # seconds a command runs before its progress bar shows
LABEL_ROOM = 16  # characters a narrow terminal keeps for what the bar is at, narrowing the bar


def run(args: argparse.Namespace) -> int:
    if args.command == "erf":
        import torch

        torch.manual_seed(args.seed)  # a zoo model's random weights, reproducibly
    bar = ProgressBar(enabled=not getattr(args, "no_progress", False), started=getattr(args, "started", None))
    args.progress_bar = bar  # the commands draw on it: one clock from the start of the command
    with bar.working("loading", args.model):
        loaded = load_model(args.model)
    if loaded.training_module:
        print(f"rfcheck: note: the model is in training mode ({loaded.training_module}); it is analysed in eval mode", file=sys.stderr)
    shape = parse_input(args.input) if args.input is not None else loaded.input_shape
    return COMMANDS[args.command](loaded.model, shape, loaded.title, args)


def requested_nodes(args: argparse.Namespace) -> list[str] | None:
    """--nodes as a list of names (None: every node)."""
    nodes = getattr(args, "nodes", None)
    return [n.strip() for n in nodes.split(",") if n.strip()] if nodes else None


def progress_bar(args: argparse.Namespace) -> ProgressBar:
    """The command's progress bar (:func:`run` makes it; one that never draws otherwise)."""
    bar = getattr(args, "progress_bar", None)
    return bar if bar is not None else ProgressBar(enabled=False)


def labelled(progress: Progress | None, prefix: str) -> Progress | None:
    """``progress`` with ``prefix`` before what each call names."""
    if progress is None:
        return None
    return lambda done, total, what: progress(done, total, f"{prefix}: {what}" if what else prefix)


def resolved(
    model, shape, names: list[str] | None, report: rfarith.Report | None = None, progress: Progress | None = None
) -> list[str] | None:
    """Node names with module paths replaced by the node their module outputs (torchvision's
    feature extraction takes them so). The model is analysed only if some name is a module
    path with submodules (a leaf module's path is already a node name); ``progress`` follows
    that analysis."""
    if not names:
        return names
    containers = {path for path, m in model.named_modules() if path and next(m.children(), None) is not None}
    if report is None and not containers.intersection(names):
        return names
    report = report if report is not None else hybrid(model, shape, progress=progress)
    paths = {path for path, _ in model.named_modules() if path}
    return [queries.resolve_node(name, report.names, paths) for name in names]


def _report(model, shape, title, args) -> int:
    bar = progress_bar(args)
    with bar.working("analysing"):
        report = rfarith.analyze(model, shape, title=title) if args.analytic_only else hybrid(model, shape, progress=bar.callback)
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
    bar = progress_bar(args)
    with bar.working("probing"):
        nodes = resolved(model, shape, requested_nodes(args), progress=bar.callback)
        frame = compare(model, shape, nodes, mode=args.mode, max_size=args.max_size, progress=bar.callback)
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
    if args.memory_budget is not None and args.kind not in ("heatmap", "erf"):
        raise ValueError(f"--max-memory-gb bounds the effective field, drawn by --kind heatmap and erf only, not --kind {args.kind}")
    image = None if args.image is None else plot.read_image(args.image, shape)
    numeric = not args.no_numeric
    bar = progress_bar(args)
    with bar.working("plotting"):
        progress = bar.callback
        node = args.node if args.node is None else resolved(model, shape, [args.node], progress=progress)[0]
        if args.kind == "grid":
            figure = plot.rf_grid(model, shape, node=node, numeric=numeric, image=image, progress=progress)
        elif args.kind == "heatmap":
            figure = plot.probe_heatmap(model, shape, node=node, progress=progress, memory_budget=_memory_budget(args))
        elif args.kind == "growth":
            figure = plot.growth(model, shape, numeric=numeric, progress=progress)
        elif args.kind == "support":
            figure = plot.support(model, shape, node=node, corners=args.corners, progress=progress)
        else:
            figure = plot.erf_profile(model, shape, node=node, progress=progress, memory_budget=_memory_budget(args))
        bar(0, 0, f"writing {out.name}")
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
    bar = progress_bar(args)
    with bar.working("analysing"):
        report = hybrid(model, shape, progress=bar.callback)
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
    """The report of the model and the node --node names (module paths resolved); called
    while the command's bar is ``working``."""
    report = hybrid(model, shape, progress=progress_bar(args).callback)
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
    unit = None if args.unit is None else queries.parse_index(args.unit, "--unit", "unit")
    with progress_bar(args).working("analysing"):
        report, node = _query_report(model, shape, args)
        answer = queries.unit_bounds(field_of(report, node), unit, args.node)
    return _answer(answer, title, shape, args)


def _sees(model, shape, title, args) -> int:
    pixel = queries.parse_index(args.pixel, "--pixel", "input pixel")
    with progress_bar(args).working("analysing"):
        report, node = _query_report(model, shape, args)
        answer = queries.units_seeing(field_of(report, node), pixel, args.node)
    return _answer(answer, title, shape, args)


def _reach(model, shape, title, args) -> int:
    bar = progress_bar(args)
    with bar.working("analysing"):
        answer = queries.first_reaching(hybrid(model, shape, progress=bar.callback), args.size)
    return _answer(answer, title, shape, args)


def _fits(model, shape, title, args) -> int:
    bar = progress_bar(args)
    with bar.working("analysing"):
        report, node = _query_report(model, shape, args)
        node = field_of(report, node).node

        def analyse(candidate: tuple[int, ...]) -> rfarith.Report:
            if candidate == tuple(shape):
                return report
            size = "x".join(map(str, candidate[1:]))
            bar(0, 0, f"input {size}")
            return hybrid(model, candidate, progress=labelled(bar.callback, f"input {size}"))

        fit = queries.smallest_holding_input(analyse, tuple(shape), node, args.max_size, _smallest_valid(model), args.node)
    return _answer(fit, title, shape, args)


def _smallest_valid(model):
    """The smallest input the model accepts, from rfarith (None when it cannot trace the model)."""

    def smallest(shape: tuple[int, ...]) -> tuple[int, ...] | None:
        try:
            return rfarith.smallest_input(model, rfarith.trace(model, (), shape), shape)
        except rfarith.RFError:
            return None

    return smallest


def _erf(model, shape, title, args) -> int:
    import rfnumeric

    bar = progress_bar(args)
    with bar.working("measuring"):
        node = None if args.node is None else resolved(model, shape, [args.node], progress=bar.callback)[0]
        bar(0, 0, f"effective field, {args.samples} inputs")
        erf = rfnumeric.effective(
            model, shape, node=node, n_inputs=args.samples, seed=args.seed, mode=args.mode, max_size=args.max_size,
            memory_budget=_memory_budget(args),
        )
    return _answer(queries.EffectiveRadii(erf), title, shape, args)


def _memory_budget(args) -> int:
    import rfnumeric

    return rfnumeric.EFFECTIVE_BUDGET if args.memory_budget is None else args.memory_budget


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
    """A one-line progress bar on standard error, for work that takes more than a moment.

    It draws only when its stream is a terminal (piped or redirected: never a character), and
    only once ``delay`` seconds (``PROGRESS_DELAY``) have passed since ``started`` (default:
    now), so a quick command prints nothing. ``bar(done, total, what)`` reports progress;
    ``total`` 0 or less means unknown (the bar then sweeps back and forth).

    ``with bar.working("analysing"):`` a thread redraws the line while the work runs (elapsed
    seconds included), so a long step that reports nothing still shows; a warning erases the
    line before it prints; at the end the line is erased, so what the command prints next on
    standard output starts on a clean line. Called outside ``working``, the bar ends its line
    when ``done`` reaches ``total``.
    """

    def __init__(
        self,
        stream=None,
        delay: float | None = None,
        width: int = 30,
        verb: str = "probing",
        enabled: bool = True,
        started: float | None = None,
        tick: float = 0.2,
    ) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.delay = PROGRESS_DELAY if delay is None else delay
        self.width = max(width, 4)
        self.verb = verb
        self.started = time.monotonic() if started is None else started
        self.tick = tick
        self.enabled = enabled and _is_terminal(self.stream)
        self.done, self.total, self.label = 0, 0, ""
        self.shown = False  # drawn at least once
        self._drawn = 0  # characters of the bar now on the line (0: none)
        self._managed = False
        self._lock = threading.Lock()
        self._contexts: list = []

    @property
    def callback(self) -> ProgressBar | None:
        """The bar where it may draw, else None: pass it as a ``progress`` argument (the
        work then need not report to a bar nobody sees)."""
        return self if self.enabled else None

    def __call__(self, done: int, total: int, label: str) -> None:
        if not self.enabled:
            return
        with self._lock:
            self.done, self.total, self.label = done, total, label
            self._draw()
            if not self._managed and self._drawn and 0 < total <= done:
                self.stream.write("\n")
                self.stream.flush()
                self._drawn = 0

    @contextmanager
    def working(self, verb: str | None = None, label: str = ""):
        """Show the bar (if it may draw) while the block runs; erase it after."""
        with self._lock:
            self.verb = verb or self.verb
            self.done, self.total, self.label = 0, 0, label
            self._managed = True
        if not self.enabled:
            try:
                yield self
            finally:
                self._managed = False
            return
        stop = threading.Event()
        ticker = threading.Thread(target=self._ticking, args=(stop,), name="rfcheck-progress", daemon=True)
        show = warnings.showwarning
        warnings.showwarning = self._erasing(show)
        ticker.start()
        with self._lock:
            self._draw()  # at once where the delay has passed already
        try:
            yield self
        finally:
            stop.set()
            ticker.join()
            warnings.showwarning = show
            with self._lock:
                self._managed = False
                self._erase()

    def __enter__(self) -> ProgressBar:
        context = self.working()
        self._contexts.append(context)
        return context.__enter__()

    def __exit__(self, *exc) -> None:
        self._contexts.pop().__exit__(*exc)

    def _ticking(self, stop: threading.Event) -> None:
        while not stop.wait(self.tick):
            with self._lock:
                self._draw()

    def _erasing(self, show):
        def shown(*args, **kwargs):
            with self._lock:
                self._erase()
            show(*args, **kwargs)

        return shown

    def _line(self, elapsed: float, columns: int) -> str:
        """``verb [bar] done/total what (elapsed)`` within ``columns``: on a narrow terminal
        the bar narrows (to leave ``what`` some room), then ``what`` loses its start."""
        count = f" {self.done}/{self.total}" if self.total > 0 else ""
        tail = f"({elapsed:.0f} s)"
        fixed = len(self.verb) + len(" []") + len(count) + len("  ") + len(tail)
        width = max(min(self.width, columns - 1 - fixed - LABEL_ROOM), 4)
        if self.total > 0:
            filled = width * min(max(self.done, 0), self.total) // self.total
            bar = "#" * filled + "-" * (width - filled)
        else:  # unknown total: a block sweeping back and forth
            span = width - 3
            step = int(elapsed / 0.1) % (2 * span)
            at = step if step <= span else 2 * span - step
            bar = " " * at + "<=>" + " " * (span - at)
        head = f"{self.verb} [{bar}]{count} "
        room = max(columns - 1 - len(head) - len(tail) - 1, 0)
        label = self.label if len(self.label) <= room else "..." + self.label[len(self.label) - room + 3 :]
        label = label[-room:] if room else ""  # the end of a long path names it best
        return (head + (label + " " if label else "") + tail)[: columns - 1]

    def _draw(self) -> None:
        """Redraw the line (the lock held), once the delay has passed."""
        elapsed = time.monotonic() - self.started
        if not self.enabled or elapsed < self.delay:
            return
        line = self._line(elapsed, _columns(self.stream))
        self.stream.write("\r" + line.ljust(self._drawn))
        self.stream.flush()
        self._drawn = max(len(line), 1)
        self.shown = True

    def _erase(self) -> None:
        """Blank the bar's line (the lock held), the cursor back at its start."""
        if self._drawn:
            self.stream.write("\r" + " " * self._drawn + "\r")
            self.stream.flush()
            self._drawn = 0


def _is_terminal(stream) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError, OSError):  # no isatty, or a closed stream
        return False


def _columns(stream) -> int:
    """The terminal's width (80 when it cannot be told)."""
    try:
        return os.get_terminal_size(stream.fileno()).columns or 80
    except (AttributeError, ValueError, OSError, io.UnsupportedOperation):
        return shutil.get_terminal_size().columns or 80
