"""The probe's view of every op the model runs: a ``TorchFunctionMode``.

Every torch function, tensor method and ``torch.nn.functional`` call made while the probe's
forward runs comes through :class:`ProbeMode`. It

1. replaces the op by its structural surrogate when there is one (``surrogates.py``: positive
   weights, identities for nonlinearities, average for max pooling, sign-free arithmetic), and
   cuts global spatial reductions in ``local`` mode;
2. attaches a layout (``layout.py``) to the result, so the probe knows where units live;
3. checks the result for NaN / Inf and registers a gradient hook that names the op where a
   non-finite gradient first appears and keeps gradients out of underflow.

Ops run with gradient off (a custom ``torch.autograd.Function``'s forward, a ``no_grad`` block
of the model) are on no gradient path: they run as written and only pass layouts on. A custom
Function's output is *settled* where it is first read (:meth:`ProbeMode.settle`): the probe
backpropagates through the Function's own backward, so the output is given a layout (see
:meth:`ProbeMode.function_layout`), materialised if it is a stride-0 view, and, when several
probes share the batch, that backward is checked for mixing batch elements.

Modules and functional calls are treated alike because ``nn.ReLU`` is ``F.relu`` by the time it
reaches this mode. Channels are *collapsed* where that is exact: a convolution whose weights
are all equal produces equal output channels, so its output is kept as one channel expanded
(stride 0) to the full shape, and the ops after it work on that one channel.
"""

from __future__ import annotations

import dis
import math
import sys
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.autograd.function import BackwardCFunction
from torch.overrides import TorchFunctionMode
from torch.utils.checkpoint import CheckpointFunction

from rfarith.errors import ProbeError

from . import layout as lay

_BASE = "_rfnumeric_base"
_NAME = "_rfnumeric_name"
_CONSUMERS = "_rfnumeric_consumers"
_HOOKED = "_rfnumeric_hooked"
_ORIGINS = "_rfnumeric_origins"  # the global reductions a tensor's value passed through
_GLOBAL = "_rfnumeric_global"  # set when a tensor depends on the input only through cuts
_BLEND = "_rfnumeric_blend"  # set when a tensor's channels hold a blend (see surrogates.cat)
_SETTLED = "_rfnumeric_function"  # a custom Function's output the probe has settled: its name

# Gradient magnitudes float64 handles safely; beyond these the hooks rescale or compress.
_TINY = 2.0**-900
_RANGE = 2.0**-600
_HUGE = 2.0**600


def all_finite(t: torch.Tensor) -> bool:
    """Whether every element of ``t`` is finite: a finite sum says so in one cheap pass (any NaN
    or Inf makes the sum non-finite); only a non-finite sum (which overflow alone can also
    give) needs the element-wise check."""
    return math.isfinite(float(t.sum())) or bool(torch.isfinite(t).all())


class Retry(BaseException):  # noqa: N818  (a control-flow signal, not an error users see)
    """The measurement must run again another way: ``reason`` is 'collapse' (an in-place op hit
    a collapsed tensor) or 'batch' (the model mixes batch elements, so probes cannot share a
    batch). A BaseException so that a model's own ``except Exception`` does not swallow it."""

    def __init__(self, reason: str, where: str) -> None:
        super().__init__(reason, where)
        self.reason = reason
        self.where = where


class Stop(BaseException):  # noqa: N818
    """Every requested feature map has been captured: the rest of the forward is not needed."""


# ---- naming ---------------------------------------------------------------------------------
def _is_leaf(m: nn.Module) -> bool:
    """A module whose ops are named after the module itself: torch.fx's default leaves (the
    torch.nn library, except containers) and modules without children."""
    builtin = type(m).__module__.startswith(("torch.nn", "torch.ao.nn"))
    container = isinstance(m, (nn.Sequential, nn.ModuleList, nn.ModuleDict))
    return (builtin and not container) or next(m.children(), None) is None


def op_name(func: Any) -> str:
    """'add' for Tensor.add, 'getitem' for Tensor.__getitem__, 'max_pool2d' for F.max_pool2d."""
    name = getattr(func, "__name__", None) or type(func).__name__
    if name == "__get__":
        name = "getattr"
    return name.strip("_") or name


class Naming:
    """Names the op running now, as torchvision's node names would: the fx node's name when the
    graph executor runs a node, else the module path (a leaf module's own op) or the module path
    plus the op name, with ``_1``, ``_2`` for repeats."""

    def __init__(self, model: nn.Module) -> None:
        self.node: str | None = None
        self.mode: ProbeMode | None = None  # the probe's mode while it runs a forward
        self.failed: tuple[str, nn.Module] | None = None
        self.stack: list[tuple[str, nn.Module]] = []
        self.counts: dict[str, int] = {}
        self.paths = {id(m): path for path, m in model.named_modules()}
        self.leaves = {id(m) for m in model.modules() if _is_leaf(m)}

    def reset(self) -> None:
        self.node = None
        self.stack.clear()
        self.counts.clear()
        self.failed = None

    def unique(self, base: str) -> str:
        count = self.counts.get(base, 0)
        self.counts[base] = count + 1
        return base if count == 0 else f"{base}_{count}"

    def enter(self, module: nn.Module) -> None:
        path = self.paths.get(id(module), type(module).__name__)
        self.stack.append((self.unique(path) if path else path, module))

    def leave(self) -> None:
        if self.stack:
            if self.failed is None and sys.exc_info()[1] is not None:
                self.failed = self.stack[-1]  # the innermost module an exception left
            self.stack.pop()

    def current(self, func: Any) -> str:
        if self.node is not None:
            return self.node
        if self.stack:
            path, module = self.stack[-1]
            if id(module) in self.leaves:
                return path or type(module).__name__
            return self.unique(f"{path}.{op_name(func)}" if path else op_name(func))
        return self.unique(op_name(func))

    def module(self) -> nn.Module | None:
        return self.stack[-1][1] if self.stack and self.node is None else None

    def install(self, model: nn.Module) -> list[Any]:
        """Hooks on the probe's own copy that keep the module stack."""
        handles = []
        for m in model.modules():
            handles.append(m.register_forward_pre_hook(lambda mod, _args: self.enter(mod)))
            handles.append(m.register_forward_hook(lambda *_: self.leave(), always_call=True))
        return handles


# ---- what the hooks and cuts record ---------------------------------------------------------
@dataclass
class Records:
    """What one forward/backward learned besides the gradient itself."""

    cuts: list[tuple[tuple[str, ...], torch.Tensor]] = field(default_factory=list)
    cut_axes: dict[str, frozenset[int]] = field(default_factory=dict)
    first_nonfinite: tuple[str, tuple[str, ...]] | None = None
    compressed: list[str] = field(default_factory=list)  # where gradients neared float64's limits
    size_dependent: list[str] = field(
        default_factory=list
    )  # ops whose geometry follows the input size
    elements: int = 0  # tensor elements the forward has produced so far
    progress: dict[str, int] = field(default_factory=dict)  # elements when each map was captured
    size_dependent_before: dict[str, int] = field(default_factory=dict)  # ... and how many such ops
    # ops that can make a field repeat only every few units (upsampling, transposed convolution,
    # pixel shuffle, ...): after them, three adjacent units cannot tell the period
    periodic_ops: list[str] = field(default_factory=list)
    periodic_ops_before: dict[str, int] = field(default_factory=dict)  # ... and how many when captured
    checking: bool = False  # a custom Function's backward is being tried alone: hooks stand by


# ---- ops after which a field may repeat only every few units --------------------------------
PERIODIC_FUNCS = frozenset(
    {
        F.interpolate, F.upsample, F.upsample_nearest, F.upsample_bilinear,
        torch.conv_transpose1d, torch.conv_transpose2d, torch.conv_transpose3d,
        F.pixel_shuffle, F.pixel_unshuffle, F.max_unpool1d, F.max_unpool2d, F.max_unpool3d,
        F.fractional_max_pool2d, F.fractional_max_pool3d, F.fold,
        torch.repeat_interleave, torch.Tensor.repeat_interleave,
    }
)
ADAPTIVE_POOLS = frozenset(
    {
        F.adaptive_avg_pool1d, F.adaptive_avg_pool2d, F.adaptive_avg_pool3d,
        F.adaptive_max_pool1d, F.adaptive_max_pool2d, F.adaptive_max_pool3d,
        torch.adaptive_avg_pool1d, torch.adaptive_max_pool1d,
    }
)


def may_make_periodic(func, x: torch.Tensor, out: Any) -> bool:
    """Whether ``func`` can give its output a field that repeats only every few units: an
    upsampling, a transposed convolution, a pixel shuffle, ..., or an adaptive pooling whose
    output size does not divide its input size."""
    if func in PERIODIC_FUNCS:
        return True
    if func in ADAPTIVE_POOLS:
        y = out[0] if isinstance(out, tuple) else out
        if isinstance(y, torch.Tensor) and y.dim() == x.dim():
            return any(n_in % n_out for n_in, n_out in zip(x.shape[2:], y.shape[2:]) if n_out)
    return False


# ---- collapsed tensors ----------------------------------------------------------------------
def record(t: torch.Tensor, attribute: str, value: Any) -> None:
    """Remember ``value`` on ``t`` for as long as ``t`` stays the tensor it is now (see
    :func:`recorded`)."""
    setattr(t, attribute, (value, t.grad_fn, t._version))


def recorded(t: Any, attribute: str) -> Any:
    """What :func:`record` remembered on ``t``, if ``t`` is still that tensor: autograd has not
    re-based it (a custom ``autograd.Function`` returning it) and nothing wrote into it since;
    else None."""
    entry = getattr(t, attribute, None)
    if entry is None:
        return None
    value, grad_fn, version = entry
    if t.grad_fn is not grad_fn or t._version != version:
        return None
    return value


def base_of(t: Any) -> torch.Tensor | None:
    """The smaller tensor ``t`` is an expanded (stride-0) view of, when the probe made it so and
    ``t`` is still that view."""
    if not isinstance(t, torch.Tensor):
        return None
    return recorded(t, _BASE)


def value_of(t: torch.Tensor) -> torch.Tensor:
    """The smallest tensor with ``t``'s values that broadcasts to ``t``: its recorded base, else
    ``t`` narrowed to one element along every stride-0 dim (those elements are all equal)."""
    base = base_of(t)
    if base is not None:
        return base
    layout = lay.get(t)
    for d, (stride, size) in enumerate(zip(t.stride(), t.shape)):
        if stride == 0 and size > 1 and not (layout is not None and _units_along(layout[d])):
            t = t.narrow(d, 0, 1)
    return t


def _units_along(dim: Any) -> bool:
    """Whether a layout dim holds units of the map or batch elements: their gradients must stay
    apart even where their values are one stored element (the probe's input is one element
    seen everywhere), so such a dim is never narrowed to its first element."""
    return any(label == lay.BATCH or label == lay.MIXED for label, _, _ in dim) or bool(lay.spatial_labels(dim))


def expanded(base: torch.Tensor, shape: torch.Size | tuple[int, ...]) -> torch.Tensor:
    """``base`` broadcast to ``shape`` without copying, remembering its base (of the same rank)."""
    shape = tuple(shape)
    if tuple(base.shape) == shape:
        return base
    if base.dim() < len(shape):
        base = base.reshape((1,) * (len(shape) - base.dim()) + tuple(base.shape))
    out = base.expand(shape)
    record(out, _BASE, base)
    return out


def overlapping(t: Any) -> bool:
    """Whether writing into ``t`` in place would write one element twice (a stride-0 view)."""
    return isinstance(t, torch.Tensor) and any(
        s == 0 and n > 1 for s, n in zip(t.stride(), t.shape)
    )


def depends(t: Any) -> bool:
    """Whether ``t`` depends on the probe's input (its gradient is what the probe reads)."""
    return isinstance(t, torch.Tensor) and t.requires_grad


_AUGMENTED: dict[tuple[Any, int], bool] = {}


def augmented_assignment(frame: Any) -> bool:
    """Whether ``frame`` is executing ``x += y`` (or ``-=``, ``*=``, ``/=``) right now. Python
    rebinds ``x`` to the result of such an op, so it may return a new tensor."""
    if frame is None:
        return False
    key = (frame.f_code, frame.f_lasti)
    if key not in _AUGMENTED:
        found = False
        for ins in dis.get_instructions(frame.f_code):
            if ins.offset == frame.f_lasti:
                found = ins.opname.startswith("INPLACE_") or (
                    ins.opname == "BINARY_OP" and str(ins.argrepr).endswith("=")
                )
                break
        _AUGMENTED[key] = found
    return _AUGMENTED[key]


# ---- the mode -------------------------------------------------------------------------------
Handler = Callable[["ProbeMode", Any, tuple, dict], Any]


class ProbeMode(TorchFunctionMode):
    """Runs a forward pass the probe's way (see the module docstring).

    ``structural``: surrogates on (positive weights, identities, average pooling). ``local``:
    cut global spatial reductions. ``collapse``: keep equal channels as one. ``batch``: the
    number of probes sharing the batch (ops that mix batch elements then signal a retry).
    ``model_dtype``: the floating dtype of the user's model, for surrogates whose non-zero
    pattern depends on rounding (resampling index maps).
    """

    def __init__(
        self,
        *,
        naming: Naming,
        structural: bool,
        local: bool,
        collapse: bool,
        batch: int,
        input_rank: int,
        table: dict[Any, Handler],
        symmetric: set[Any] = frozenset(),
        model_dtype: torch.dtype = torch.float32,
        regroup: Callable[[Any, tuple, dict], Any] | None = None,
        regrouping: frozenset = frozenset(),
    ) -> None:
        super().__init__()
        self.naming = naming
        self.model_dtype = model_dtype  # the floating dtype the user's model computes in
        self.structural = structural
        self.local = local
        self.collapse = collapse
        self.batch = batch
        self.input_rank = input_rank
        self.table = table
        self.symmetric = symmetric
        self.regroup = regroup  # moves a blend's channel classes (``classes.regroup``)
        self.regrouping = regrouping if regroup is not None else frozenset()
        self.records = Records()
        self.blended_input = False  # whether the op running now takes a blended tensor
        self.exact = False  # set by a handler whose output is exact even from a blend
        self.blends = False  # set by a handler whose output is a blend
        self.name = ""
        self.frame: Any = None  # the caller's frame while a handler runs (to spot ``x += y``)
        self.origins: tuple[str, ...] = ()
        self.only_global = False
        self.call: tuple[Any, tuple, dict] | None = None  # the op a handler is running
        # every tensor on the gradient path so far, by (autograd node, output number): how a
        # custom Function's inputs are found from its backward node
        self.known: dict[tuple[int, int], weakref.ref[torch.Tensor]] = {}

    def __enter__(self):
        self.naming.mode = self
        return super().__enter__()

    def __exit__(self, *exc):
        self.naming.mode = None
        return super().__exit__(*exc)

    # -- dispatch --------------------------------------------------------------------------
    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if not torch.is_grad_enabled():
            return self._untracked(func, args, kwargs)
        args, kwargs = self._settle_inputs(func, args, kwargs)
        if self.collapse and func in self.regrouping and args and getattr(args[0], _BLEND, False):
            out = self._regrouped(func, args, kwargs)
            if out is not None:
                return out
        handler = self.table.get(func)
        if handler is None:
            out = self.passthrough(func, args, kwargs)
            if not _holds_tensor(out):
                return out  # metadata: .shape, .dim(), .size(), comparisons to Python values
            self.name = self.naming.current(func)
            inputs = [a for a in lay.tensors_in(list(args) + list(kwargs.values())) if depends(a)]
            if any(getattr(a, _BLEND, False) for a in inputs):
                raise Retry("collapse", self.name)  # an op that may treat channels differently
            self.exact = self.blends = False
        else:
            self.name = self.naming.current(func)
            inputs = [a for a in lay.tensors_in(list(args) + list(kwargs.values())) if depends(a)]
            self.origins = tuple(dict.fromkeys(o for a in inputs for o in getattr(a, _ORIGINS, ())))
            self.only_global = bool(inputs) and all(getattr(a, _GLOBAL, False) for a in inputs)
            self.blended_input = any(getattr(a, _BLEND, False) for a in inputs)
            if self.blended_input and func not in self.symmetric:
                raise Retry("collapse", self.name)
            self.exact = self.blends = False
            self.call, self.frame = (func, args, kwargs), sys._getframe(1)
            try:
                out = handler(self, func, args, kwargs)
            finally:
                self.call = self.frame = None
        self._note_consumers(inputs)
        if inputs and may_make_periodic(func, inputs[0], out):
            self.records.periodic_ops.append(self.name)
        return self._finish(func, args, kwargs, out, inputs)

    def _regrouped(self, func, args, kwargs):
        """An op that only moves the channels of a blend with classes (see ``classes.py``), or
        ``None`` to treat it as any other op."""
        self.name = self.naming.current(func)
        out = self.regroup(func, args, kwargs)
        if out is None:
            return None
        inputs = [args[0]]
        self.exact, self.blends = True, False  # the outputs carry their own blend marks
        self._note_consumers(inputs)
        return self._finish(func, args, kwargs, out, inputs)

    def passthrough(self, func, args, kwargs):
        """Run the op as it is, except what a collapsed (stride-0) tensor cannot take."""
        if self.collapse:
            target = args[0] if args else None
            if overlapping(target):
                if func is torch.Tensor.view:
                    return target.reshape(*args[1:], **kwargs)
                if _is_inplace(func):
                    raise Retry("collapse", self.naming.current(func))
            if overlapping(kwargs.get("out")):
                raise Retry("collapse", self.naming.current(func))
        return func(*args, **kwargs)

    # -- bookkeeping -----------------------------------------------------------------------
    def _note_consumers(self, inputs: list[torch.Tensor]) -> None:
        """Remember which ops read each tensor (on the tensor its gradient hook watches), to
        name them if a non-finite gradient appears there."""
        for a in inputs:
            watched = base_of(a)
            watched = a if watched is None else watched
            consumers = getattr(watched, _CONSUMERS, None)
            if consumers is None:
                consumers = []
                setattr(watched, _CONSUMERS, consumers)
            if len(consumers) < 4 and self.name not in consumers:
                consumers.append(self.name)

    def _finish(self, func, args, kwargs, out, inputs: list[torch.Tensor]):
        if isinstance(out, torch.Tensor):
            items = [out]
        elif isinstance(out, (tuple, list)):
            items = list(out)
        else:
            return out
        if not any(depends(t) for t in items):
            return out
        try:
            layouts = lay.propagate(func, args, kwargs, out)
        except Exception:  # a layout rule that does not understand a call leaves it unknown
            layouts = None
        if isinstance(out, torch.Tensor):
            layouts = [layouts]
        elif not isinstance(layouts, (tuple, list)) or len(layouts) != len(items):
            layouts = [None] * len(items)
        origins = tuple(dict.fromkeys(o for a in inputs for o in getattr(a, _ORIGINS, ())))
        only_global = bool(inputs) and all(getattr(a, _GLOBAL, False) for a in inputs)
        blend = self.blends or (not self.exact and any(getattr(a, _BLEND, False) for a in inputs))
        for item, layout in zip(items, layouts):
            if depends(item):
                if blend:
                    setattr(item, _BLEND, True)
                if lay.get(item) is None:
                    lay.attach(item, layout)
                self.register(item)
                if origins and not getattr(item, _ORIGINS, None):
                    setattr(item, _ORIGINS, origins)
                if only_global and not hasattr(item, _GLOBAL):
                    setattr(item, _GLOBAL, True)
                self._check_and_hook(item)
        return out

    def _check_and_hook(self, t: torch.Tensor) -> None:
        target = value_of(t)
        if getattr(target, _HOOKED, False) or not target.is_floating_point():
            return
        setattr(target, _HOOKED, True)
        setattr(target, _NAME, self.name)
        self.records.elements += target.numel()
        if not all_finite(target.detach()):
            kind = "NaN" if bool(torch.isnan(target).any()) else "Inf"
            module = self.naming.module()
            raise ProbeError(
                f"the probe's forward pass produces {kind} first at '{self.name}'"
                + (f" ({type(module).__name__})" if module is not None else "")
                + f", output shape {tuple(t.shape)}. "
                + (
                    "In structural mode weights are positive and nonlinearities are identities, so this op "
                    "is one rfnumeric does not replace; probe an earlier node, or report the op."
                    if self.structural
                    else "The model itself produces it for this input; check that layer."
                )
            )
        if target.requires_grad and target.grad_fn is not None:
            target.register_hook(self._gradient_hook(target))

    def _gradient_hook(self, t: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor | None]:
        """A hook that must not refer to ``t`` itself (the tensor would then hold a reference
        cycle through its own hook and outlive the measurement)."""
        name = getattr(t, _NAME, "?")
        consumers = getattr(t, _CONSUMERS, None)
        if consumers is None:
            consumers = []
            setattr(t, _CONSUMERS, consumers)
        records = self.records
        structural = self.structural

        def hook(grad: torch.Tensor) -> torch.Tensor | None:
            if records.checking or grad is None:  # None: an output of a multi-output op no path used
                return None
            size = grad.abs()
            peak_value = float(size.max()) if size.numel() else 0.0  # NaN if any element is
            if not math.isfinite(peak_value):
                if records.first_nonfinite is None:
                    records.first_nonfinite = (name, tuple(consumers))
                return None
            if peak_value == 0.0:
                return None
            smallest = float(torch.where(size > 0, size, math.inf).min())
            if smallest < _TINY or smallest < peak_value * _RANGE:
                records.compressed.append(name)
                if not structural:  # real gradients may cancel later: only say so
                    return None
                return torch.sign(grad) * (size / peak_value) ** 0.25
            if structural and (peak_value > _HUGE or peak_value < _RANGE):
                return grad / peak_value
            return None

        return hook

    # -- custom autograd Functions -----------------------------------------------------------
    def register(self, t: torch.Tensor) -> None:
        """Remember ``t`` by its autograd node, so that a custom Function reading it finds it."""
        node = t.grad_fn
        if node is not None:
            self.known[(node._sequence_nr(), t.output_nr)] = weakref.ref(t)

    def _untracked(self, func, args, kwargs):
        """An op run with gradient off: inside a custom ``autograd.Function``'s forward (the
        probe reads that Function's own backward instead) or a ``no_grad`` block of the model.
        It is on no gradient path, so it runs as written (no surrogate, no hook); its result
        takes the layout the op's rule gives when an input has one, so that a Function's output
        can be located."""
        out = self.passthrough(func, args, kwargs)
        if not _holds_tensor(out):
            return out
        self.name = self.naming.current(func)  # named as any op, so later names stay the same
        tensors = lay.tensors_in(list(args) + list(kwargs.values()))
        inputs = [a for a in tensors if depends(a)]
        for a in inputs:
            if _unsettled(a):  # one Function reading another's output: place that one first
                self.settle(a, self._reader(func))
            self.register(a)
        self._note_consumers(inputs)  # a non-finite gradient there is named after this op
        if not any(lay.get(a) is not None for a in tensors):
            return out
        items = [out] if isinstance(out, torch.Tensor) else list(out)
        try:
            layouts = lay.propagate(func, args, kwargs, out)
        except Exception:  # a layout rule that does not understand a call leaves it unknown
            return out
        if isinstance(out, torch.Tensor):
            layouts = [layouts]
        elif not isinstance(layouts, (tuple, list)) or len(layouts) != len(items):
            return out
        for item, layout in zip(items, layouts):
            if isinstance(item, torch.Tensor) and layout is not None and lay.get(item) is None:
                lay.attach(item, layout)
        return out

    def _settle_inputs(self, func, args, kwargs):
        """Settle the custom Functions' outputs among an op's inputs the first time they are
        read, and hand the op the dense copy of one that is a stride-0 view."""
        swaps: dict[int, torch.Tensor] = {}
        for a in lay.tensors_in(list(args) + list(kwargs.values())):
            if not depends(a):
                continue
            if _unsettled(a):
                self.settle(a, self._reader(func))
            dense = base_of(a)
            if dense is not None and dense.shape == a.shape:
                swaps[id(a)] = dense
        if not swaps:
            return args, kwargs
        return _swap(args, swaps), {k: _swap(v, swaps) for k, v in kwargs.items()}

    def _reader(self, func: Any) -> str:
        """The op about to run, for messages (without counting it as a call: names stay)."""
        if self.naming.node is not None:
            return f"node '{self.naming.node}'"
        path = self.naming.stack[-1][0] if self.naming.stack else ""
        return f"'{op_name(func)}'" + (f" in module '{path}'" if path else "")

    def settle_value(self, value: Any, where: str) -> None:
        """Settle the custom Functions' outputs in a captured value (a tensor, or a tuple, list or
        dict of them)."""
        items = list(value.values()) if isinstance(value, dict) else value
        for t in lay.tensors_in(items):
            if depends(t) and _unsettled(t):
                self.settle(t, where)

    def settle(self, t: torch.Tensor, where: str) -> None:
        """Prepare the output ``t`` of a custom ``autograd.Function`` (read by ``where``) for the
        probe. Its forward ran without gradient, so nothing the probe attaches reached it: give
        it a layout (:meth:`function_layout`); retry uncollapsed if the Function reads a blend
        (it may treat channels differently); materialise it if it is a stride-0 view (the ops
        after it must pass every element's gradient to the Function's backward, which may treat
        channels and positions differently); check that backward does not mix batch elements
        when several probes share the batch; hook it like any op's output."""
        node = t.grad_fn
        function = getattr(node, "_forward_cls", None) or type(node)
        name = function.__name__
        setattr(t, _SETTLED, name)
        with torch._C.DisableTorchFunction():  # the probe's own ops, not the model's
            if function is CheckpointFunction:
                raise ProbeError(
                    f"the model runs part of its forward under torch.utils.checkpoint "
                    f"(use_reentrant=True), read by {where}: its backward recomputes that part "
                    "outside the probe, so the structural probe cannot see those ops. Way out: "
                    "probe the model with activation checkpointing turned off."
                )
            sources = self._sources(node)
            known = [s for s in sources if s is not None]
            for s in known:
                if _unsettled(s):  # read straight from another Function
                    self.settle(s, f"'{name}'")
            if self.collapse and any(getattr(s, _BLEND, False) for s in known):
                raise Retry("collapse", name)
            layout = self.function_layout(t, sources, name, where)
            lay.attach(t, layout)
            origins = tuple(dict.fromkeys(o for s in known for o in getattr(s, _ORIGINS, ())))
            flags = {_ORIGINS: origins} if origins else {}
            if known and all(getattr(s, _GLOBAL, False) for s in known):
                flags[_GLOBAL] = True
            for key, value in flags.items():
                setattr(t, key, value)
            self.register(t)
            self._check_function_batch(t, layout, sources, name)
            if overlapping(t):
                with torch.enable_grad():
                    dense = t.contiguous()
                lay.attach(dense, layout)
                for key, value in flags.items():
                    setattr(dense, key, value)
                record(t, _BASE, dense)
                self.register(dense)
            previous, self.name = self.name, name
            try:
                self._note_consumers(known)
                self._check_and_hook(t)
            finally:
                self.name = previous

    def _sources(self, node: Any) -> list[torch.Tensor | None]:
        """The tensors a custom Function read, one per input that requires grad (``None`` for
        one the probe never saw)."""
        found: list[torch.Tensor | None] = []
        for fn, nr in node.next_functions:
            if fn is None:
                continue
            t = getattr(fn, "variable", None)  # AccumulateGrad: a leaf
            if t is None:
                ref = self.known.get((fn._sequence_nr(), nr))
                t = ref() if ref is not None else None
                if t is not None and (t.grad_fn is not fn or t.output_nr != nr):
                    t = None
            found.append(t)
        return found

    def function_layout(
        self, t: torch.Tensor, sources: list[torch.Tensor | None], name: str, where: str
    ) -> lay.Layout:
        """Where the units of custom Function ``name``'s output ``t`` are, in this order: the
        layout its forward's own ops gave it, if that locates an input axis; the layout of its
        input of the same shape (one layout among such inputs); ``(batch, channels, *spatial)``
        (or ``(batch, features)``) when every input is known and that reading is unambiguous:
        the inputs that carry an input axis are themselves ``(batch, channels, *spatial)`` with
        ``t``'s batch size (for a rank-2 ``t``: no input carries one). Otherwise a ProbeError
        naming the Function: seeding every position would report a global field."""
        inner = lay.get(t)
        if inner is not None and lay.has_space(inner):
            return inner
        known = [(s, lay.get(s)) for s in sources if s is not None]
        located = [(s, found) for s, found in known if found is not None]
        complete = bool(sources) and len(located) == len(sources)
        same = list(dict.fromkeys(found for s, found in located if s.shape == t.shape))
        if len(same) == 1:
            return same[0]
        guess = lay.assumed(t.shape, self.input_rank)
        if complete and not same and guess is not None and t.shape[0] == self.batch:
            spatial = [found for _, found in located if lay.has_space(found)]
            if t.dim() == self.input_rank:
                if spatial and all(lay.standard(found, self.input_rank) for found in spatial):
                    return guess
            elif not spatial:  # (batch, features) from inputs that carry no input axis
                return guess
        if inner is not None and complete and not any(lay.has_space(f) for _, f in located):
            return inner
        shapes = ", ".join(str(tuple(s.shape)) for s, _ in known) or "none the probe saw"
        raise ProbeError(
            f"cannot tell where the units of the output of custom autograd.Function '{name}' "
            f"(shape {tuple(t.shape)}, read by {where}) are: its forward runs without gradient, "
            f"so the probe follows only its backward, and its inputs (shapes {shapes}) do not "
            "show which output dims carry the batch and the input's axes. Way out: probe a node "
            f"before '{name}', or have '{name}' return a (batch, channels, *spatial) map with "
            "its input's batch size.",
            kind="layout",
        )

    def _check_function_batch(
        self,
        t: torch.Tensor,
        layout: lay.Layout,
        sources: list[torch.Tensor | None],
        name: str,
    ) -> None:
        """With several probes in the batch, run custom Function ``name``'s backward alone from
        some batch elements of ``t`` and signal a retry (one unit per pass) if gradient reaches
        another element of its inputs, or if the batch cannot be told apart. Each pair of
        elements differs in some bit of their index: seeding the elements whose bit is set, then
        those whose bit is clear, for every bit, finds any leak in ``2 * log2(batch)`` runs."""
        if self.batch <= 1:
            return
        out_dim = lay.batch_dim(layout, self.batch)
        dims = [
            lay.batch_dim(found, self.batch) if (found := lay.get(s)) is not None else None
            for s in sources
            if s is not None
        ]
        if out_dim is None or any(s is None for s in sources) or None in dims:
            raise Retry("batch", name)
        inputs = [s for s in sources if s is not None]
        shape = [1] * t.dim()
        shape[out_dim] = self.batch
        index = torch.arange(self.batch)
        self.records.checking = True
        try:
            with torch.enable_grad():
                for bit in range((self.batch - 1).bit_length()):
                    for side in (1, 0):
                        chosen = ((index >> bit) & 1) == side
                        seed = chosen.to(t.dtype).reshape(shape).expand(t.shape).contiguous()
                        grads = torch.autograd.grad(
                            [t], inputs, [seed], retain_graph=True, allow_unused=True
                        )
                        others = (~chosen).nonzero().flatten()
                        for g, d in zip(grads, dims):
                            if g is not None and bool((g.index_select(d, others) != 0).any()):
                                raise Retry("batch", name)
        except Retry:
            raise
        except Exception:  # its backward cannot run alone: probe one unit per pass
            raise Retry("batch", name) from None
        finally:
            self.records.checking = False

    # -- helpers handlers use ----------------------------------------------------------------
    def layout_of(self, t: torch.Tensor) -> lay.Layout | None:
        found = lay.get(t)
        return found if found is not None else lay.assumed(t.shape, self.input_rank)

    def mixes(self, t: torch.Tensor, dims: tuple[int, ...], label: Any) -> bool:
        return lay.carries(self.layout_of(t), dims, label)

    def axes_of(self, t: torch.Tensor, dims: tuple[int, ...]) -> frozenset[int]:
        """The input axes that ``t``'s ``dims`` carry (an op mixing them is global along them)."""
        return lay.axes_in(self.layout_of(t), dims, self.input_rank - 2)

    def check_batch(self, t: torch.Tensor, dims: tuple[int, ...]) -> None:
        """Signal a retry if an op mixes batch elements while several probes share the batch."""
        if self.batch > 1 and self.mixes(t, dims, lay.BATCH):
            raise Retry("batch", self.name)

    def cut(self, value: Any, axes: frozenset[int]) -> Any:
        """``local`` mode: keep the value of a reduction that is global along ``axes`` but not its
        gradient path. The value is multiplied by a scale of ones, one per probe (batch
        element), that requires grad, so whether the path reaches a probed unit is still
        recorded (its scale then receives gradient). Tuples are cut element-wise. Outside local
        mode, or with no axes, the value is kept as is."""
        if not self.local or not axes:
            return value
        if isinstance(value, (tuple, list)):
            return _rebuild(value, [self.cut(v, axes) for v in value])
        if not (isinstance(value, torch.Tensor) and depends(value) and value.is_floating_point()):
            return value
        if self.only_global:  # already cut upstream: a side path of a side path adds nothing
            return value
        layout = (
            lay.get(value) or self._call_layout(value) or lay.assumed(value.shape, self.input_rank)
        )
        scale = torch.ones(self.batch, dtype=value.dtype, requires_grad=True)
        origins = tuple(dict.fromkeys((*self.origins, self.name)))
        self.records.cuts.append((origins, scale))
        self.records.cut_axes[self.name] = self.records.cut_axes.get(self.name, frozenset()) | axes
        base = value_of(value)
        if self.batch == 1:
            detached = base.detach() * scale.reshape((1,) * base.dim())
        elif layout is not None and (lay.BATCH, self.batch, 1) in [
            d[0] for d in layout if len(d) == 1
        ]:
            where = [d[0] if len(d) == 1 else None for d in layout].index(
                (lay.BATCH, self.batch, 1)
            )
            placed = [self.batch if d == where else 1 for d in range(base.dim())]
            detached = base.detach() * scale.reshape(placed)  # the batch has a dim of its own
        else:
            detached = value.detach() * _per_element(scale, layout, value.shape, self.name)
        out = broadcast_to(detached, value.shape, self.collapse)
        lay.attach(out, layout)
        for t in (out, detached):
            setattr(t, _ORIGINS, origins)
            setattr(t, _GLOBAL, True)
        return out

    def _call_layout(self, value: torch.Tensor) -> lay.Layout | None:
        """The layout the running op gives a tensor of ``value``'s shape (for values a handler
        made itself)."""
        if self.call is None:
            return None
        try:
            layouts = lay.propagate(*self.call, value)
        except Exception:  # an unusual call the layout rules do not read
            return None
        return (
            layouts
            if isinstance(layouts, tuple)
            and layouts
            and isinstance(layouts[0], tuple)
            and lay.matches(layouts, value.shape)
            else None
        )


def _per_element(
    scale: torch.Tensor, layout: lay.Layout | None, shape: torch.Size, where: str
) -> torch.Tensor:
    """``scale`` (one entry per batch element) laid out to multiply a tensor of ``shape``."""
    if layout is None or not any(label == lay.BATCH for dim in layout for label, _, _ in dim):
        raise Retry("batch", where)  # cannot tell the probes apart in this tensor
    factors = [size for dim in layout for _, size, _ in dim]
    placed = [size if label == lay.BATCH else 1 for dim in layout for label, size, _ in dim]
    return scale.reshape(placed).expand(factors).reshape(shape)


def broadcast_to(value: torch.Tensor, shape: torch.Size, collapse: bool) -> torch.Tensor:
    """``value`` at ``shape``: a stride-0 view when collapsing, a real tensor otherwise."""
    if tuple(value.shape) == tuple(shape):
        return value
    return expanded(value, shape) if collapse else value.expand(tuple(shape)).contiguous()


def _rebuild(template: Any, parts: list) -> Any:
    """A tuple, list, named tuple or torch.return_types value with new elements."""
    if type(template) in (tuple, list):
        return type(template)(parts)
    if hasattr(template, "_fields"):  # a named tuple
        return type(template)(*parts)
    return type(template)(parts)  # torch.return_types.* take one sequence


def _unsettled(t: torch.Tensor) -> bool:
    """Whether ``t`` is a custom ``autograd.Function``'s output the probe has not settled yet."""
    return not hasattr(t, _SETTLED) and isinstance(t.grad_fn, BackwardCFunction)


def _swap(value: Any, swaps: dict[int, torch.Tensor]) -> Any:
    """``value`` with the tensors whose id is in ``swaps`` replaced (inside lists and tuples)."""
    if isinstance(value, torch.Tensor):
        return swaps.get(id(value), value)
    if type(value) in (list, tuple):
        return type(value)(_swap(v, swaps) for v in value)
    return value


def settled(naming: Naming, value: Any, where: str) -> Any:
    """``value`` (a captured feature map) with the custom Functions' outputs in it settled, when
    the probe's mode is running (see :meth:`ProbeMode.settle`)."""
    if naming.mode is not None:
        naming.mode.settle_value(value, where)
    return value


def note_input(naming: Naming, x: Any) -> None:
    """Make the model input known to the running mode (a custom Function may read it first)."""
    if naming.mode is not None and depends(x):
        naming.mode.register(x)


def _holds_tensor(out: Any) -> bool:
    if isinstance(out, torch.Tensor):
        return True
    return isinstance(out, (tuple, list)) and any(isinstance(t, torch.Tensor) for t in out)


def _is_inplace(func: Any) -> bool:
    name = getattr(func, "__name__", "")
    return (name.endswith("_") and not name.endswith("__")) or name in (
        "__setitem__",
        "__iadd__",
        "__isub__",
        "__imul__",
        "__itruediv__",
    )
