"""Hybrid analysis: the analytic walk, with the probe measuring what the arithmetic has no rule for.

A module torch.fx cannot trace becomes a leaf of the trace; an op without a rule (or such a
leaf) is measured as a black box: the probe reads, on the op alone and at the very input size it
receives in the model, which units of its input each output unit sees. Along each axis that
index map is fitted as a period ``P`` (1 for a sliding window), a shift ``A`` and per-phase
source offsets, checked on every measured unit, border units included (which also tells which
padding the op uses), and then composed analytically like any rule. The report's rows say
``from: probe`` where this happened.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from fractions import Fraction

import torch
from torch import nn

import rfarith
import rfnumeric
from rfarith import axisfield as af
from rfarith.errors import TraceError, UnsupportedOp
from rfarith.rules.common import map_trailing_axes
from rfarith.rules.registry import Call
from rfarith.tracing import trace
from rfarith.value import is_part
from rfarith.walk import Row

from . import numeric

BORDERS = ("zeros", "replicate", "reflect", "circular")
WAY_OUT = (
    "give it a rule (rfarith.register_rule / register_window / register_neutral), or measure the "
    "whole model numerically with rfnumeric.probe / rfnumeric.sweep"
)
MAX_LEAVES = 64
MAX_CLIMBS = 32  # times hybrid measures a larger module around an op it could not measure
Progress = Callable[[int, int, str], None]  # progress(done, total, what): total 0 when unknown


def hybrid(model: nn.Module, input_shape: Sequence[int], mode: str = "local", progress: Progress | None = None) -> rfarith.Report:
    """Layer-by-layer report of any model: analytic where rules exist, measured elsewhere.

    ``progress(done, total, what)``, if given, follows the probe's measurements: black boxes
    measured so far (``total`` 0: their number is known only at the end of the walk), or the
    maps of a model fx cannot trace (:func:`measured_report`).

    >>> import torch, torch.nn as nn, crosscheck
    >>> class Gate(nn.Module):          # data-dependent control flow: fx cannot trace it
    ...     def forward(self, x):
    ...         return x if x.sum() > 0 else -x
    >>> net = nn.Sequential(nn.Conv2d(3, 4, 3), Gate(), nn.Conv2d(4, 4, 3))
    >>> rep = crosscheck.hybrid(net, (1, 3, 16, 16))
    >>> rep.output.r, rep.table.loc["1", "source"]
    ((5, 5), 'probe')
    """
    leaves: list[str] = []
    while True:
        try:
            trace(model, leaves, input_shape)
            break
        except TraceError as e:
            if not e.module_path:  # the root's own forward: nothing to trace, measure every module
                return measured_report(model, input_shape, mode, progress)
            if e.module_path in leaves or len(leaves) >= MAX_LEAVES:
                raise
            leaves.append(e.module_path)
    unmeasurable: set[type] = set()  # module classes whose calls the probe could not measure
    for climb in range(MAX_CLIMBS + 1):
        try:
            fallback = BlackBox(mode, progress)
            return rfarith.analyze(model, input_shape, leaf_modules=leaves, fallback=fallback, title=type(model).__name__)
        except UnsupportedOp as e:
            if e.node in leaves:
                unmeasurable.add(type(model.get_submodule(e.node)))
            enclosing = enclosing_module(model, e.node, leaves, tuple(unmeasurable))
            if enclosing is None or len(leaves) >= MAX_LEAVES or climb == MAX_CLIMBS:
                raise
            leaves.append(enclosing)  # measure the module around the op the probe could not measure
    raise AssertionError("unreachable: the last climb returns or raises")


def enclosing_module(model: nn.Module, node: str, leaves: Sequence[str], skip: tuple[type, ...] = ()) -> str | None:
    """The innermost module (not the model itself, not already a leaf, not of a class in
    ``skip``) around ``node``: its qualified name with components stripped from the right until
    it names a submodule. A black box the probe cannot measure alone (attention of several
    inputs, a reshape) is measured within it: one tensor in, one out (MobileViT's transformer
    layer around its attention over patches)."""
    parts = node.split(".")
    for i in range(len(parts) - 1, 0, -1):
        path = ".".join(parts[:i])
        if path in leaves:
            continue
        try:
            module = model.get_submodule(path)
        except AttributeError:
            continue
        if not isinstance(module, skip):
            return path
    return None


def measured_report(
    model: nn.Module, input_shape: Sequence[int], mode: str = "local", progress: Progress | None = None
) -> rfarith.Report:
    """The table of a model fx cannot trace at all: every module call measured by the probe.

    Rows are named by module path; their fields are the probe's (periodic, from its r, j and
    start), and every row says ``from: probe``. A map the probe cannot measure keeps its row,
    with no field and the reason. The last row, ``output``, is the model's real output, probed
    as such (not the last module call, which need not be it). ``progress`` counts the maps the
    sweep measured, and the output as the last one.
    """
    measured = [0]  # maps the sweep measures (its total), the output then counts as one more

    def swept(done: int, total: int, what: str) -> None:
        measured[0] = total
        if progress is not None:
            progress(done, total + 1, what)

    frame = rfnumeric.sweep(model, input_shape, mode=mode, progress=None if progress is None else swept)
    axes = rfarith.axis_names(len(input_shape) - 2)
    rows = [_measured_row(str(name), record, axes, input_shape) for name, record in frame.iterrows()]
    if progress is not None:
        progress(measured[0], measured[0] + 1, "output")
    rows.append(_output_row(model, input_shape, axes, mode))
    if progress is not None:
        progress(measured[0] + 1, measured[0] + 1, "output")
    return rfarith.Report(rows, {"output": "output"}, tuple(input_shape), type(model).__name__, traced=False)


def _measured_row(name: str, record, axes: tuple[str, ...], input_shape: Sequence[int]) -> Row:
    source = "rule" if record["op"] == "input" else "probe"
    shape = tuple(record["shape"])
    if any(_missing(record[f"r_{a}"]) for a in axes):
        reason = str(record["flags"]).removeprefix("not measured: ") or "the probe could not measure this map"
        return Row(name, str(record["op"]), shape, None, source, reason)
    flags, via = _parse_flags(record["flags"])
    extent = tuple(int(s) for s in input_shape[2:])
    terms = (tuple(_measured_axis(record, a) for a in axes),)
    field = rfarith.ReceptiveField(name, axes, terms, extent, via, frozenset(flags - {"global"}) if via else frozenset(flags))
    return Row(name, str(record["op"]), shape, field, source)


def _output_row(model: nn.Module, input_shape: Sequence[int], axes: tuple[str, ...], mode: str) -> Row:
    """The model's own output, probed (a row with the reason where the probe cannot)."""
    try:
        probe = rfnumeric.probe(model, input_shape, mode=mode)
    except (rfarith.RFError, ValueError) as e:
        return Row("output", "output", (), None, "probe", str(e).strip().splitlines()[0])
    record = {"op": "output", "shape": (), "flags": probe.describe_flags()}
    for i, a in enumerate(axes):
        n = probe.n[i] if tuple(probe.input_shape[2:]) == tuple(input_shape[2:]) else math.nan
        record.update({f"n_{a}": n, f"j_{a}": probe.j[i], f"r_{a}": probe.r[i], f"start_{a}": probe.start[i]})
    if any(_missing(record[f"{q}_{a}"]) for a in axes for q in ("n", "r")):
        why = "its size at the user's input is unknown" if any(_missing(record[f"n_{a}"]) for a in axes) else "no field"
        return Row("output", "output", (), None, "probe", f"the probe measured the output on a grown input only ({why})")
    return _measured_row("output", record, axes, input_shape)


def _missing(value) -> bool:
    return value is None or (isinstance(value, float) and value != value)


def _measured_axis(record, axis: str) -> af.AxisField:
    """A periodic field from the probe's n, j, r, start along one axis (phases alike)."""
    n, j, r, start = record[f"n_{axis}"], record[f"j_{axis}"], int(record[f"r_{axis}"]), record[f"start_{axis}"]
    step = Fraction(0) if _missing(j) else Fraction(j).limit_denominator(1 << 16)
    lo = Fraction(start) - Fraction(r, 2)
    phases = tuple((int(math.floor(lo + p * step)), (1 << r) - 1) for p in range(step.denominator))
    return af.AxisField(step.denominator, step.numerator, phases, int(n))


def _parse_flags(text: str) -> tuple[set[str], tuple[str, ...]]:
    flags: set[str] = set()
    via: tuple[str, ...] = ()
    for part in filter(None, (p.strip() for p in re.split(r",(?![^()]*\))", text or ""))):
        word = part.split(" ")[0]
        flags.add(word)
        if word == "global" and "(via " in part:
            via = (part.split("(via ", 1)[1].rstrip(")").split(",")[0].strip(),)
    return flags, via


class _Applied(nn.Module):
    """An op as a module of one tensor: a leaf module, or a function with its other arguments."""

    def __init__(self, call: Call, position: int) -> None:
        super().__init__()
        self.inner = call.module
        self.target = call.target
        self.kind = call.kind
        self.args = list(_real(call.args))
        self.kwargs = dict(_real(call.kwargs))
        self.position = position

    def forward(self, x: torch.Tensor):
        # the op's other tensors (a function's weights) in the probe's dtype: they are no
        # parameters of this module, so the probe's float64 copy would not convert them
        args = [_as(a, x.dtype) for a in self.args]
        args[self.position] = x
        kwargs = {k: _as(v, x.dtype) for k, v in self.kwargs.items()}
        if self.kind == "call_module":
            return self.inner(*args, **kwargs)
        if self.kind == "call_method":
            return getattr(args[0], self.target)(*args[1:], **kwargs)
        return self.target(*args, **kwargs)


def _as(obj, dtype: torch.dtype):
    if isinstance(obj, torch.Tensor) and obj.is_floating_point() and obj.dtype != dtype and dtype.is_floating_point:
        return obj.to(dtype)
    return obj


def _real(obj):
    """Fake tensors replaced by real ones of the same shape (values do not matter to the probe)."""
    if isinstance(obj, torch.Tensor):
        if type(obj).__name__ == "FakeTensor":
            return torch.rand(obj.shape, dtype=obj.dtype) + 0.5 if obj.is_floating_point() else torch.zeros(obj.shape, dtype=obj.dtype)
        return obj
    if isinstance(obj, (list, tuple)):
        return type(obj)(_real(o) for o in obj)
    if isinstance(obj, dict):
        return {k: _real(v) for k, v in obj.items()}
    return obj


@dataclass(frozen=True)
class FittedAxis:
    """An index map measured along one axis, as :func:`rfarith.axisfield.resample` takes it."""

    period: int
    shift: int
    sources: tuple[tuple[int, ...], ...]
    border: str


class BlackBox:
    """The fallback rfarith calls for an op without a rule."""

    def __init__(self, mode: str, progress: Progress | None = None) -> None:
        self.mode = mode
        self.progress = progress
        self.measured = 0

    def __call__(self, call: Call):
        if self.progress is not None:
            self.progress(self.measured, 0, call.node)
        try:
            return self._measure(call)
        finally:
            self.measured += 1

    def _measure(self, call: Call):
        inputs = [(i, t) for i, t in enumerate(call.args) if isinstance(t, torch.Tensor) and call.value(t) is not None]
        others = [t for t, v in call.tensors() if v is not None and all(t is not u for _, u in inputs)]
        if len(inputs) != 1 or others:
            raise UnsupportedOp(call.node, call.op, "the probe measures black boxes of one input-dependent tensor", WAY_OUT)
        position, tensor = inputs[0]
        x = call.value(tensor)
        out = call.out
        if not isinstance(out, torch.Tensor) or out.dim() != tensor.dim():
            raise UnsupportedOp(call.node, call.op, "a black box whose output is not a tensor of its input's rank", WAY_OUT)
        shape = tuple(tensor.shape)
        nd = len(shape) - 2
        if not _standard(x, nd):
            raise UnsupportedOp(
                call.node, call.op,
                "a black box whose input is not a (batch, channels, *spatial) map (tokens, windows): the probe "
                "measures it along the last dims as spatial axes", WAY_OUT,
            )
        box = _Applied(call, position)
        maps = []
        for axis in range(nd):
            try:
                fitted = fit_axis(box, shape, tuple(out.shape), axis, self.mode)
            except ValueError as e:
                raise UnsupportedOp(call.node, call.op, f"measured as a black box along axis {axis}: {e}", WAY_OUT) from None
            maps.append(_axis_map(fitted))
        value = map_trailing_axes(call, x, nd, maps)
        reached = numeric.global_reach(box, shape, self.mode)
        return value.with_global((call.node,)) if reached else value


def _standard(x, nd: int) -> bool:
    """Whether ``x`` is laid out as (batch, channels, *spatial): each of the last ``nd`` dims one
    whole spatial axis, the dims in front none."""
    if nd < 1:
        return False
    last = x.dims[x.rank - nd :]
    whole = all(len(dim) == 1 and dim[0][0] is not None and not is_part(dim[0][0]) for dim in last)
    return whole and not any(x.axes_of(d) for d in range(x.rank - nd))


def _axis_map(fitted: FittedAxis):
    return lambda f, _n, n_out, _e: af.resample(f, fitted.period, fitted.shift, fitted.sources, n_out, fitted.border)


def fit_axis(box: nn.Module, shape: tuple[int, ...], out_shape: tuple[int, ...], axis: int, mode: str) -> FittedAxis:
    """Measure which input units each output unit along ``axis`` reads, and fit the index map."""
    n_in, n_out = shape[2 + axis], out_shape[2 + axis]
    centre = [s // 2 for s in out_shape[2:]]
    wanted = sorted({*range(min(n_out, 12)), *range(max(n_out - 12, 0), n_out), *range(max(centre[axis] - 6, 0), min(centre[axis] + 6, n_out))})
    units = []
    for m in wanted:
        unit = list(centre)
        unit[axis] = m
        units.append(tuple(unit))
    _, supports = numeric.units_at(box, shape, None, units, mode)
    seen = {s.unit[axis]: s.pixels[axis] for s in supports}
    return _fit(seen, n_in, n_out)


def _fit(seen: dict[int, tuple[int, ...]], n_in: int, n_out: int) -> FittedAxis:
    """The smallest period whose shifted sources explain every measured unit, with the border
    padding that explains the edge units."""
    interior = sorted(seen)
    for period in range(1, max(len(interior) // 2, 1) + 1):
        candidate = _periodic(seen, period)
        if candidate is None:
            continue
        shift, sources = candidate
        if shift < 0:
            raise ValueError("its units read the input in reverse order (a flip), which no field with a positive jump describes")
        for border in BORDERS:
            fitted = FittedAxis(period, shift, sources, border)
            if all(_predict(fitted, m, n_in) == tuple(pixels) for m, pixels in seen.items()):
                return fitted
    raise ValueError(f"no periodic index map explains what its units see ({seen})")


def _periodic(seen: dict[int, tuple[int, ...]], period: int) -> tuple[int, tuple[tuple[int, ...], ...]] | None:
    """Shift and per-phase offsets read off the middle units, if the pattern repeats there."""
    units = sorted(seen)
    middle = units[len(units) // 2 - period : len(units) // 2 + period]
    pairs = [(m, m + period) for m in middle if m + period in seen and seen[m] and seen[m + period]]
    if not pairs:
        return None
    shifts = {seen[b][0] - seen[a][0] for a, b in pairs}
    if len(shifts) != 1:
        return None
    shift = shifts.pop()
    if any(tuple(p + shift for p in seen[a]) != seen[b] for a, b in pairs):
        return None
    sources = []
    for phase in range(period):
        m = next((u for u in middle if u % period == phase and seen[u]), None)
        if m is None:
            return None
        q = m // period
        sources.append(tuple(p - q * shift for p in seen[m]))
    return shift, tuple(sources)


def _predict(fitted: FittedAxis, m: int, n_in: int) -> tuple[int, ...]:
    q, phase = divmod(m, fitted.period)
    pixels = set()
    for offset in fitted.sources[phase]:
        source = af.border_source(q * fitted.shift + offset, n_in, fitted.border)
        if source is not None:
            pixels.add(source)
    return tuple(sorted(pixels))
