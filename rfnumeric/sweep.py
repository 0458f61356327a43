"""``rfnumeric.sweep``: the probe on every feature map of a model, as one table."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import pandas as pd
import torch
from torch import nn

from rfarith.errors import ProbeError

from . import layout as lay
from .capture import Locator, leaf_module_calls, select_output
from .measure import ForwardFailed, Session, Target
from .mode import Retry, depends
from .probe import check_mode, fit_notes, outcome_flags, warn_if_size_dependent
from .result import describe_flags
from .search import Search, run_searches

PROGRESS_CHUNK = 32  # maps measured together between two progress calls (as crosscheck's compare)


@dataclass(frozen=True)
class Row:
    """One feature map of the sweep, as the survey forward saw it at the user's input shape."""

    target: Target
    op: str
    shape: tuple[int, ...]
    n: tuple[int, ...]
    problem: str = ""  # why the map cannot be measured ('' if it can)
    alias: str = ""  # the row's own name when it repeats another node (a model output)
    cost: int = 0  # tensor elements one probe's forward produces up to this map (user's input)
    same_as: str = ""  # an earlier node whose map is this very tensor (see SHARE_IDENTICAL_MAPS)

    @property
    def name(self) -> str:
        return self.alias or self.target.name


def sweep(
    model: nn.Module,
    input_shape: Sequence[int],
    nodes: Sequence[str] | None = None,
    mode: str = "local",
    max_size: int = 4096,
    progress: Callable[[int, int, str], None] | None = None,
) -> pd.DataFrame:
    """Probe every feature map of ``model`` (or the listed ``nodes``) and tabulate the fields.

    The table has rfarith's columns (``Report.table``): index = node name, ``op``, ``shape``
    (at ``input_shape``), then per axis ``n_<a>`` (at ``input_shape``), ``j_<a>``, ``r_<a>``,
    ``start_<a>``, then ``flags`` (a string such as ``'global (via se.pool), holes'``). Nodes
    whose output does not depend on the input, or is not a tensor, are left out. A map the
    probe cannot measure gets NaN and ``flags`` saying why (``'not measured: ...'``).

    Maps are measured together: one forward and one backward per input size serve every map
    that fits it (in chunks within a memory budget). Without ``torch.fx``, the nodes are the
    model input and every call of a leaf module.

    ``progress(done, total, node)``, if given, is called once the maps are known (``done`` 0)
    and after every ``PROGRESS_CHUNK`` maps measured (the last one's name). The maps are then
    measured in such chunks, which costs more forwards on models with many maps.

    >>> import torch.nn as nn, rfnumeric
    >>> net = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.MaxPool2d(2))
    >>> table = rfnumeric.sweep(net, (1, 3, 32, 32))
    >>> list(table.index), table.loc["2", ["op", "n_h", "j_h", "r_h", "start_h"]].astype(str).tolist()
    (['input', '0', '1', '2'], ['MaxPool2d', '15', '2', '4', '2.0'])
    """
    local = check_mode(mode)
    session = Session(model, input_shape, "structural")
    rows = _survey(session, nodes, local)
    user = session.shape[2:]
    searches = {
        row.target.name: Search(
            row.target, user, user, max_size, want_full=not local, keep_heatmap=False, cost=row.cost
        )
        for row in rows
        if not row.problem and not row.same_as
    }
    pending = list(searches.values())
    if progress is None:
        run_searches(session, pending, isolate=True)
    else:
        progress(0, len(pending), "")
        for first in range(0, len(pending), PROGRESS_CHUNK):
            part = pending[first : first + PROGRESS_CHUNK]
            run_searches(session, part, isolate=True)
            progress(first + len(part), len(pending), part[-1].target.name)
    warn_if_size_dependent({name: s.outcome for name, s in searches.items() if s.outcome}, user)
    records = [_record(session, row, searches.get(row.same_as or row.target.name)) for row in rows]
    return _table(records, _columns(session.axes))


def _table(records: list[dict[str, Any]], columns: list[str]) -> pd.DataFrame:
    """The records as a DataFrame; a column holding NaN keeps its other values as they are
    (ints stay ints, as in rfarith's table, instead of becoming floats)."""
    table = pd.DataFrame.from_records(records, columns=columns)
    for column in columns[3:-1]:
        values = [record[column] for record in records]
        if any(isinstance(v, float) and math.isnan(v) for v in values):
            table[column] = pd.Series(values, dtype=object)
    return table.set_index("node")


def _columns(axes: Sequence[str]) -> list[str]:
    columns = ["node", "op", "shape"]
    for a in axes:
        columns += [f"n_{a}", f"j_{a}", f"r_{a}", f"start_{a}"]
    return [*columns, "flags"]


def _record(session: Session, row: Row, search: Search | None) -> dict[str, Any]:
    record: dict[str, Any] = {"node": row.name, "op": row.op, "shape": row.shape}
    outcome = search.outcome if search is not None else None
    for i, a in enumerate(session.axes):
        record[f"n_{a}"] = row.n[i]
        fit = outcome.fits[i] if outcome is not None else None
        record[f"j_{a}"] = fit.j if fit is not None else math.nan
        record[f"r_{a}"] = fit.r if fit is not None else math.nan
        record[f"start_{a}"] = fit.start if fit is not None else math.nan
    if outcome is not None:
        record["flags"] = describe_flags(
            frozenset(outcome_flags(outcome)), outcome.reached, fit_notes(session.axes, outcome.fits)
        )
    else:
        reason = row.problem or (
            str(search.error) if search is not None and search.error else "unknown"
        )
        record["flags"] = f"not measured: {reason}"
    return record


# ---- the survey: which maps exist, their op, shape and size at the user's input ------------
def _survey(session: Session, nodes: Sequence[str] | None, local: bool) -> list[Row]:
    traced = session.resolver.traced
    if nodes is not None:
        targets = [session.target(name) for name in nodes]
        return _rows_of(session, targets, local)
    if traced is not None:
        locators = [
            Locator(traced.names[n], "graph", node=n)
            for n in traced.graph.nodes
            if n.op not in ("output", "get_attr")
        ]
        rows = _rows_of(session, [Target(loc) for loc in locators], local)
        return rows + _output_rows(traced, rows)
    return _module_rows(session, local)


def _output_rows(traced: Any, rows: list[Row]) -> list[Row]:
    """A model with several outputs gets a row per output, named ``output[key]`` as in rfarith's
    report, measured like the node it returns."""
    output = next(n for n in traced.graph.nodes if n.op == "output")
    sources: dict[str, str] = {}

    def visit(obj: Any, key: str) -> None:
        if isinstance(obj, torch.fx.Node):
            sources[key] = traced.names[obj]
        elif isinstance(obj, dict):
            for k, v in obj.items():
                visit(v, str(k))
        elif isinstance(obj, (tuple, list)):
            for i, v in enumerate(obj):
                visit(v, str(i))

    visit(output.args[0], "output")
    by_name = {row.target.name: row for row in rows}
    aliases = [(key, by_name[name]) for key, name in sources.items() if name in by_name]
    if len(aliases) < 2:
        return []
    return [replace(row, op="output", alias=f"output[{key}]") for key, row in aliases]


# Measure a map only once when several nodes hold the very same tensor in the probe's forward:
# a structural identity (ReLU, eval BatchNorm, dropout) returns its input tensor itself, and one
# tensor has one gradient for every seed, so the nodes' fields are equal by construction.
SHARE_IDENTICAL_MAPS = True


def same_tensor(captured: dict[str, Any], names: Sequence[str]) -> dict[str, str]:
    """Each of ``names`` whose captured value is the very tensor an earlier one holds, mapped
    to that first name (in the order of ``names``)."""
    first_holder: dict[int, str] = {}
    shared = {}
    for name in names:
        value = captured.get(name)
        if isinstance(value, torch.Tensor):
            first = first_holder.setdefault(id(value), name)
            if first != name:
                shared[name] = first
    return shared


def _rows_of(session: Session, targets: list[Target], local: bool) -> list[Row]:
    rows: list[Row] = []
    for group in _by_executor(targets):
        captured, mode = _survey_forward(session, group, local)
        progress = mode.records.progress
        shared = same_tensor(captured, [t.name for t in group if t.output is None])
        for target in group:
            cost = progress.get(target.name, mode.records.elements) // session.shape[0]
            row = _row(session, target, captured.get(target.name), _op_label(session, target), cost)
            if row is None:
                continue
            if SHARE_IDENTICAL_MAPS and target.name in shared:
                row = replace(row, same_as=shared[target.name])
            rows.append(row)
    order = {t.name: i for i, t in enumerate(targets)}
    return sorted(rows, key=lambda r: order[r.target.name])


def _survey_forward(
    session: Session, targets: list[Target], local: bool
) -> tuple[dict[str, Any], Any]:
    """One forward at the user's input shape capturing ``targets``: uncollapsed if needed, and
    with one batch element if the model mixes batch elements (its shapes then show batch 1)."""
    batch = session.shape[0]
    while True:
        try:
            captured, mode, _ = session.forward(session.shape[2:], targets, batch, local)
            return captured, mode
        except ForwardFailed as failed:  # as Session.measure: uncollapsed once, then say where
            if session.collapse:
                session.collapse = False
                continue
            raise session._forward_error(failed.error, session.shape[2:]) from failed.error
        except Retry as retry:
            if retry.reason == "collapse" and session.collapse:
                session.collapse = False
            elif retry.reason == "batch" and batch > 1:
                batch = 1
            else:
                raise ProbeError(
                    f"the probe cannot run this model at '{retry.where}' ({retry.reason})"
                ) from None


def _by_executor(targets: list[Target]) -> list[list[Target]]:
    graph = [t for t in targets if t.locator.kind == "graph"]
    other = [t for t in targets if t.locator.kind != "graph"]
    return [g for g in (graph, other) if g]


def _module_rows(session: Session, local: bool) -> list[Row]:
    """Untraceable model: the input and every call of a leaf module, in call order."""
    paths = leaf_module_calls(session.model)
    input_name = session.resolver.input_name()
    calls, x, progress = session.survey_calls(paths, local)
    rows = []
    first = _row(session, Target(Locator(input_name, "input")), x, "input", 0)
    if first is not None:
        rows.append(first)
    for name, path, value in calls:
        call = int(name.rsplit("_", 1)[1]) if name != path else 0
        target = Target(Locator(name, "module", path=path, call=call))
        cost = progress.get(name, 0) // session.shape[0]
        row = _row(session, target, value, type(session.model.get_submodule(path)).__name__, cost)
        if row is not None:
            rows.append(row)
    return rows


def _row(session: Session, target: Target, value: Any, op: str, cost: int) -> Row | None:
    if not isinstance(value, torch.Tensor):
        try:
            value = (
                select_output(value, target.output, target.name)
                if target.output is not None
                else None
            )
        except (ValueError, RuntimeError):
            value = None
    if not isinstance(value, torch.Tensor) or not depends(value):
        return None
    layout = lay.get(value) or lay.assumed(value.shape, len(session.shape))
    n_axes = len(session.axes)
    if layout is None or not lay.locatable(layout, offsets=True):
        n = lay.map_sizes(layout, n_axes) if layout is not None else (math.nan,) * n_axes
        return Row(
            target,
            op,
            tuple(value.shape),
            n,
            "its dims do not show where the units are (e.g. tokens with a class token)",
        )
    return Row(target, op, tuple(value.shape), lay.map_sizes(layout, n_axes), cost=cost)


def _op_label(session: Session, target: Target) -> str:
    """The op column, as rfarith writes it: module class, function or method name, 'input'."""
    loc = target.locator
    if loc.kind == "input":
        return "input"
    if loc.kind == "module":
        return type(session.model.get_submodule(loc.path)).__name__
    if loc.kind == "output":
        return "output"
    node = loc.node
    if node.op == "placeholder":
        return "input"
    if node.op == "call_module":
        return type(session.model.get_submodule(node.target)).__name__
    if node.op == "call_method":
        return str(node.target)
    return getattr(node.target, "__name__", str(node.target))
