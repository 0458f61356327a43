"""One measurement: a forward pass at one input size, one seed per probed unit, one backward.

Every probed unit gets its own batch element (batch elements are independent in eval mode), so
the centre unit, its neighbours and any number of feature maps are measured by a single
backward pass. The input is all ones (positive). What comes back per unit is the projection
of its support on each axis and, when asked, its gradient map.

When a measurement cannot run the fast way it runs again a slower way, and the session
remembers: channels uncollapsed after an in-place op on a collapsed tensor; one unit per pass
when the model mixes batch elements or fails on a larger batch.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from rfarith.errors import ProbeError, RFError, ShapeError, TraceError
from rfarith.field import axis_names

from . import layout as lay
from .capture import EagerRun, GraphRun, Locator, Resolver, select_output
from .classes import REGROUPING, regroup
from .copying import probe_copy
from .fitting import Span, projections
from .mode import Naming, ProbeMode, Retry, all_finite, base_of, depends, expanded
from .surrogates import SYMMETRIC, TABLE


def check_input_shape(input_shape: Any) -> tuple[int, ...]:
    """``(batch, channels, *spatial)`` with 1 to 3 spatial axes, as a tuple of positive ints."""
    try:
        shape = tuple(int(s) for s in input_shape)
    except (TypeError, ValueError):
        raise ShapeError(
            f"input_shape {input_shape!r} must be a sequence of ints (batch, channels, *spatial), e.g. (1, 3, 224, 224)"
        ) from None
    if not 3 <= len(shape) <= 5:
        raise ShapeError(
            f"input_shape {shape} has rank {len(shape)}; give (batch, channels, *spatial) with 1 to 3 "
            "spatial axes, e.g. (1, 3, 224, 224) or (1, 1, 128) for 1-D"
        )
    if any(s <= 0 for s in shape):
        raise ShapeError(f"input_shape {shape} has a size <= 0; every size must be positive")
    return shape


@dataclass(frozen=True)
class Target:
    """A feature map to probe: a located node and, for nodes returning several tensors, which."""

    locator: Locator
    output: int | str | None = None

    @property
    def name(self) -> str:
        return self.locator.name

    @property
    def in_graph(self) -> bool:
        """Whether the map is a node of the traced graph (else a module call or the output, read
        as the model runs): one forward reaches its maps one way only."""
        return self.locator.kind == "graph"


@dataclass(frozen=True)
class UnitSpec:
    """Which unit of a map to probe, once the map's size is known: the centre ('centre'), the
    centre moved by ``offset`` along ``axis`` ('step'; 'side' steps go right, or left near the
    end), the centre moved by ``unit`` along every axis at once ('phase'), a fixed ``unit``
    ('fixed'; negative indices count from the end), or every unit at once ('all', resolved to
    ``()``: what the map can see at all)."""

    kind: str
    axis: int = 0
    offset: int = 0
    unit: tuple[int, ...] = ()
    shift: int = 0  # the centre moved this many units along every axis (a centre that sees nothing)
    # per axis, how many consecutive units from the resolved one share its seed (a band across
    # the other axes' phases: see Search.requests); () or 1: the unit alone
    band: tuple[int, ...] = ()

    def seeded(self, n: Sequence[int]) -> list[tuple[int, ...] | None]:
        """The units whose seeds this request's batch element carries: the resolved unit (None
        if the map has none), or the band of units starting there (clipped to the map)."""
        unit = self.resolve(n)
        if unit is None or not unit or not any(b > 1 for b in self.band):
            return [unit]
        ranges = [
            range(u, min(u + max(b, 1), size)) for u, b, size in zip(unit, self.band, n)
        ]
        return list(itertools.product(*ranges))

    def resolve(self, n: Sequence[int]) -> tuple[int, ...] | None:
        centre = [min(size // 2 + self.shift, size - 1) for size in n]
        if self.kind == "centre":
            return tuple(centre)
        if self.kind == "all":
            return ()
        if self.kind == "fixed":
            unit = tuple(u + size if u < 0 else u for u, size in zip(self.unit, n))
            return unit if all(0 <= u < size for u, size in zip(unit, n)) else None
        if self.kind == "phase":
            unit = tuple(c + o for c, o in zip(centre, self.unit))
            return unit if all(0 <= u < size for u, size in zip(unit, n)) else None
        step = self.offset
        if self.kind == "side" and centre[self.axis] + 2 >= n[self.axis]:
            step = -step  # too close to the end: the neighbours on the other side
        centre[self.axis] += step
        return tuple(centre) if 0 <= centre[self.axis] < n[self.axis] else None


@dataclass(frozen=True)
class Request:
    target: Target
    spec: UnitSpec
    keep_heatmap: bool = False
    keep_support: bool = False  # keep the unit's exact support (Element.support)


@dataclass(frozen=True)
class Element:
    """What one probed unit sees. ``unit`` is None when the map has no such unit."""

    request: Request
    unit: tuple[int, ...] | None
    n: tuple[int, ...]
    shape: tuple[int, ...]
    spans: tuple[Span | None, ...]
    reached: tuple[str, ...]
    reached_axes: frozenset[int]  # the axes those reductions are global along
    heatmap: np.ndarray | None
    connected: bool  # whether the feature map depends on the input at all
    box_holes: bool = False  # some pixel inside the box its support spans receives no gradient
    size_dependent: tuple[str, ...] = ()  # ops before the map whose geometry follows the input size
    # with Request.keep_support: the exact support, as the first pixel of its box per axis and
    # the box's boolean pattern (a pixel is seen iff its gradient is non-zero); None otherwise
    support: tuple[tuple[int, ...], np.ndarray] | None = None
    periodic_ops: tuple[str, ...] = ()  # ops before the map after which its field may repeat

    @property
    def empty(self) -> bool:
        """The unit exists but no input pixel receives gradient from it."""
        return self.unit is not None and any(s is None for s in self.spans)


@dataclass(frozen=True)
class Measurement:
    sizes: tuple[int, ...]
    input_shape: tuple[int, ...]
    elements: list[Element]
    compressed: bool
    elements_per_probe: int  # tensor elements the forward produced per batch element

    @classmethod
    def merge(cls, parts: Sequence[Measurement]) -> Measurement:
        """One measurement from several made at the same size (split to save memory)."""
        return cls(
            parts[0].sizes,
            parts[0].input_shape,
            [e for p in parts for e in p.elements],
            any(p.compressed for p in parts),
            max(p.elements_per_probe for p in parts),
        )


def input_heat(gradient: torch.Tensor) -> np.ndarray:
    """Per batch element and input pixel, how much gradient reached it over the channels: the
    sum of magnitudes, or, with one channel, the gradient itself (no pass over the whole input:
    its non-zero pattern is what is read; callers take its magnitude where they keep it)."""
    gradient = gradient.detach()
    if gradient.shape[1] == 1:
        return gradient[:, 0].numpy()
    return gradient.abs().sum(1).numpy()


def _box_holes(seen: np.ndarray, spans: tuple[Span | None, ...]) -> bool:
    """Whether some pixel inside the box of a unit's support receives no gradient (a hole along
    an axis, or a corner that factorised 1xn / nx1 branches leave unseen)."""
    if any(s is None for s in spans):
        return False
    return not bool(seen[tuple(slice(s.lo, s.hi + 1) for s in spans)].all())


def _ops_before(ops: list[str], before: dict[str, int], name: str) -> list[str]:
    """The ops recorded before the map ``name`` was captured (all of them if it never was)."""
    return ops[: before.get(name, len(ops))]


def _support_box(seen: np.ndarray, spans: tuple[Span | None, ...]) -> tuple[tuple[int, ...], np.ndarray]:
    """A unit's exact support cut to the box it spans: (first pixel per axis, the pattern)."""
    if any(s is None for s in spans):
        return (0,) * len(spans), np.zeros((0,) * len(spans), dtype=bool)
    box = tuple(slice(s.lo, s.hi + 1) for s in spans)
    return tuple(s.lo for s in spans), seen[box].copy()


def seed_for(
    tensor: torch.Tensor,
    layout: lay.Layout,
    units: list[tuple[int, tuple[int, ...] | None]],
    batch: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The tensor to backpropagate from and its seed: 1 at every channel of each ``unit`` in its
    batch element (``units``: (batch element, unit)). The seed covers only those batch elements,
    and lies on the one-channel base of a collapsed tensor (with the channel count as value:
    the same gradient, without a full-size seed)."""
    root = base_of(tensor)
    root = tensor if root is None or root.dim() != tensor.dim() else root
    batch_dim = next(
        (d for d, dim in enumerate(layout) if len(dim) == 1 and dim[0][0] == lay.BATCH), None
    )
    first = min(e for e, _ in units)
    count = max(e for e, _ in units) - first + 1
    if batch > 1 and batch_dim is not None and root.shape[batch_dim] == batch:
        root = root.narrow(batch_dim, first, count)
        layout = (
            layout[:batch_dim]
            + (((lay.BATCH, count, 1),) if count > 1 else (),)
            + layout[batch_dim + 1 :]
        )
    else:
        first = 0
    seed = torch.zeros(root.shape, dtype=root.dtype)
    for e, unit in units:
        if unit is not None:
            index, weight = _seed_index(layout, root.shape, unit, e - first if batch > 1 else None)
            seed[index] += weight
    return root, seed


def _seed_index(
    layout: lay.Layout, shape: Sequence[int], unit: tuple[int, ...], element: int | None
) -> tuple[tuple, float]:
    """Index (numpy-style, per dim) of ``unit`` (``()``: every unit) in a tensor of ``shape``
    whose dims follow ``layout`` but may be size 1 where the layout's dim is broadcast: such a
    dim is indexed at 0 and counts each position it stands for in ``weight``."""
    index: list[torch.Tensor] = []
    weight = 1.0
    rank = len(layout)
    for d, dim in enumerate(layout):
        flat = lay.seed_positions(dim, unit, element)
        if shape[d] == 1 and lay.dim_size(dim) > 1:  # broadcast: every chosen position is index 0
            weight *= len(flat)
            flat = [0]
        view = [1] * rank
        view[d] = len(flat)
        index.append(torch.tensor(flat).reshape(view))
    return tuple(index), weight


def root_cause(error: BaseException) -> BaseException:
    """The first error of a chain (``raise ... from``): the model's own, under the probe's account."""
    while error.__cause__ is not None:
        error = error.__cause__
    return error


class ForwardFailed(Exception):
    """The model's forward (or its backward) raised; ``error`` is what it raised."""

    def __init__(self, error: Exception) -> None:
        super().__init__(str(error))
        self.error = error


def floating_dtype(model: nn.Module) -> torch.dtype:
    """The dtype the model computes in: that of its first floating parameter or buffer, else
    float32 (PyTorch's default)."""
    for t in itertools.chain(model.parameters(), model.buffers()):
        if t.is_floating_point():
            return t.dtype
    return torch.float32


class Session:
    """A prepared copy of the model and everything needed to measure it repeatedly."""

    def __init__(self, model: nn.Module, input_shape: Any, weights: str = "structural") -> None:
        self.shape = check_input_shape(input_shape)
        self.axes = axis_names(len(self.shape) - 2)
        self.weights = weights
        self.model_dtype = floating_dtype(model)
        self.model = probe_copy(model, weights)
        self.naming = Naming(self.model)
        self.naming.install(self.model)
        self.resolver = Resolver(self.model, self.shape)
        self.collapse = weights == "structural"
        self.batched = True
        # the most tensor elements per input pixel one probe produced in any measurement so
        # far (0 before the first): what a measurement of unknown cost is budgeted at
        self.elements_per_pixel = 0.0

    @property
    def channels(self) -> int:
        return self.shape[1]

    def target(self, node: str | None, output: int | str | None = None) -> Target:
        """The feature map ``node`` names; ``'output[key]'`` is one output of the model, as
        rfarith's report names the outputs of a model that returns several."""
        if (
            isinstance(node, str)
            and output is None
            and node.startswith("output[")
            and node.endswith("]")
        ):
            return Target(Locator(node, "output"), node[len("output[") : -1])
        return Target(self.resolver.resolve(node), output)

    # -- measuring ---------------------------------------------------------------------------
    def measure(
        self, sizes: Sequence[int], requests: Sequence[Request], local: bool
    ) -> Measurement:
        """Measure every request at input size ``sizes``, retrying slower ways if needed."""
        sizes = tuple(int(s) for s in sizes)
        while True:
            try:
                if self.batched or len(requests) == 1:
                    return self._measure(sizes, list(requests), local)
                return Measurement.merge([self._measure(sizes, [r], local) for r in requests])
            except Retry as retry:
                if retry.reason == "collapse" and self.collapse:
                    self.collapse = False
                elif retry.reason == "batch" and self.batched:
                    self.batched = False
                else:
                    raise ProbeError(
                        f"the probe cannot run this model at '{retry.where}' ({retry.reason})"
                    ) from None
            except ForwardFailed as failed:
                if self.batched and len(requests) > 1:
                    self.batched = False  # e.g. a reshape that hard-codes the batch size
                    continue
                if self.collapse:
                    self.collapse = False
                    continue
                raise self._forward_error(failed.error, sizes) from failed.error

    def _forward_error(self, error: Exception, sizes: tuple[int, ...]) -> RFError:
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        where = ""
        if self.naming.failed is not None:
            path, module = self.naming.failed
            where = f" in module '{path}' ({type(module).__name__})"
        elif self.naming.node:
            where = f" at node '{self.naming.node}'"
        shape = (1, self.channels, *sizes)
        message = f"the probe's forward pass failed{where} for input shape {shape}: {reason}."
        lowered = reason.lower()
        if "channel" in lowered or "size" in lowered or "shape" in lowered or "kernel" in lowered:
            return ShapeError(
                message + " Way out: check input_shape (batch, channels, *spatial); the "
                "probe may also have grown the input past what the model accepts "
                "(pass size_hint or a larger input_shape).",
                kind="forward",
            )
        return ProbeError(message, kind="forward")

    def _executor(self, locators: Sequence[Locator], mode: ProbeMode, batch: int, sizes: Sequence[int]):
        def mark(name: str) -> None:
            mode.records.progress[name] = mode.records.elements
            mode.records.size_dependent_before[name] = len(mode.records.size_dependent)
            mode.records.periodic_ops_before[name] = len(mode.records.periodic_ops)

        if any(loc.kind == "graph" for loc in locators):
            if any(loc.kind != "graph" for loc in locators):
                raise ValueError(
                    "cannot mix graph nodes with module paths or the output in one measurement"
                )
            traced = self.resolver.traced
            assert traced is not None
            try:
                here = self.resolver.traced_at((batch, self.channels, *sizes))
            except TraceError as e:
                # the graph holds one input's sizes and traced there; at these sizes the model's
                # own code fails (a size check, a reshape): the model rejects this input
                raise ForwardFailed(root_cause(e)) from e
            return GraphRun(self.model, here, self.naming, mark, located_in=traced)
        return EagerRun(self.model, self.naming, mark)

    def _input(
        self, batch: int, sizes: tuple[int, ...], collapse: bool
    ) -> tuple[torch.Tensor, torch.Tensor]:
        shape = (batch, self.channels, *sizes)
        # all ones, as one element seen everywhere (stride 0): nothing to fill, and the first
        # ops read it from cache; its gradient comes back dense all the same
        leaf = (
            torch.ones((), dtype=torch.float64)
            .expand(batch, 1 if collapse else self.channels, *sizes)
            .requires_grad_(True)
        )
        with torch.inference_mode(False), torch.enable_grad():
            x = expanded(leaf, shape) if collapse and self.channels > 1 else leaf * 1.0
        lay.attach(x, lay.input_layout(shape))
        return leaf, x

    def forward(
        self,
        sizes: tuple[int, ...],
        targets: Sequence[Target],
        batch: int,
        local: bool,
        x: torch.Tensor | None = None,
    ) -> tuple[dict[str, Any], ProbeMode, torch.Tensor]:
        """Run the copy under the probe's mode; returns the captured values by target name."""
        collapse = self.collapse and x is None
        if x is None:
            leaf, x_in = self._input(batch, sizes, collapse)
        else:
            leaf = x
            with torch.inference_mode(False), torch.enable_grad():
                x_in = x * 1.0
            lay.attach(x_in, lay.input_layout(x_in.shape))
        locators = list({t.locator: None for t in targets})
        mode = self._mode(local, collapse, batch)
        self.naming.reset()
        try:
            executor = self._executor(locators, mode, x_in.shape[0], x_in.shape[2:])  # traced outside the mode
            with torch.inference_mode(False), torch.enable_grad(), mode:
                captured = executor.run(x_in, locators)
        except (RFError, Retry, ForwardFailed):
            raise
        except Exception as e:
            raise ForwardFailed(e) from e
        return captured, mode, leaf

    def survey_calls(
        self, paths: Sequence[str], local: bool
    ) -> tuple[list[tuple[str, str, Any]], torch.Tensor, dict[str, int]]:
        """One forward at the user's input shape recording every call of the modules at
        ``paths``; returns the calls, the input tensor, and the tensor elements produced up to
        each call."""
        mode = self._mode(local, self.collapse, self.shape[0])
        leaf, x = self._input(self.shape[0], self.shape[2:], self.collapse)
        self.naming.reset()
        try:
            executor = self._executor([], mode, x.shape[0], x.shape[2:])
            with torch.inference_mode(False), torch.enable_grad(), mode:
                calls = executor.calls(x, paths)
        except (RFError, Retry):
            raise
        except Exception as e:  # the model rejects the input: say where, as measure() does
            raise self._forward_error(e, self.shape[2:]) from e
        return calls, x, mode.records.progress

    def _mode(self, local: bool, collapse: bool, batch: int) -> ProbeMode:
        return ProbeMode(
            naming=self.naming,
            structural=self.weights == "structural",
            local=local,
            collapse=collapse,
            batch=batch,
            input_rank=len(self.shape),
            table=TABLE,
            symmetric=SYMMETRIC,
            model_dtype=self.model_dtype,
            regroup=regroup,
            regrouping=REGROUPING,
        )

    def _measure(self, sizes: tuple[int, ...], requests: list[Request], local: bool) -> Measurement:
        batch = len(requests)
        targets = list({r.target: None for r in requests})
        captured, mode, leaf = self.forward(sizes, targets, batch, local)
        outputs, seeds, units, maps = [], [], {}, {}
        for target in targets:
            tensor = self._captured(captured, target)
            layout = lay.get(tensor) or lay.assumed(tensor.shape, len(self.shape))
            if layout is None or not lay.locatable(layout, offsets=True):
                raise ProbeError(
                    f"cannot tell where the units of '{target.name}' (shape {tuple(tensor.shape)}) are: "
                    "its dims do not carry the spatial axes in a way the probe can follow (e.g. patch "
                    "tokens with a class token in front). Probe a node with a (batch, channels, *spatial) "
                    "or token-grid output.",
                    kind="layout",
                )
            n = lay.map_sizes(layout, len(self.axes))
            maps[target] = (n, tuple(tensor.shape), depends(tensor))
            mine = [(e, r.spec.resolve(n)) for e, r in enumerate(requests) if r.target == target]
            units.update(mine)
            if depends(tensor):
                seeded = [
                    (e, u)
                    for e, r in enumerate(requests)
                    if r.target == target
                    for u in r.spec.seeded(n)
                ]
                output, seed = seed_for(tensor, layout, seeded, batch)
                outputs.append(output)
                seeds.append(seed)
        scales = [s for _, s in mode.records.cuts]
        grads = self._backward(outputs, [leaf, *scales], seeds)
        gradient = grads[0] if grads[0] is not None else torch.zeros_like(leaf)
        self._check_finite(gradient, mode)
        heat = input_heat(gradient)
        before = {
            t: tuple(dict.fromkeys(_ops_before(mode.records.size_dependent, mode.records.size_dependent_before, t.name)))
            for t in targets
        }
        periodic_before = {
            t: tuple(dict.fromkeys(_ops_before(mode.records.periodic_ops, mode.records.periodic_ops_before, t.name)))
            for t in targets
        }
        elements = []
        for e, request in enumerate(requests):
            n, shape, connected = maps[request.target]
            seen = heat[e] != 0
            reached = tuple(
                dict.fromkeys(
                    name
                    for (names, _), g in zip(mode.records.cuts, grads[1:])
                    if g is not None and bool(g[e] != 0)
                    for name in names
                )
            )
            reached_axes = frozenset().union(
                *(mode.records.cut_axes.get(name, frozenset()) for name in reached)
            )
            spans = tuple(Span.of(p) for p in projections(seen))
            elements.append(
                Element(
                    request,
                    units.get(e),
                    n,
                    shape,
                    spans,
                    reached,
                    reached_axes,
                    np.abs(heat[e]) if request.keep_heatmap else None,
                    connected,
                    _box_holes(seen, spans),
                    before.get(request.target, ()),
                    _support_box(seen, spans) if request.keep_support else None,
                    periodic_before.get(request.target, ()),
                )
            )
        per_probe = mode.records.elements // max(batch, 1)
        self.elements_per_pixel = max(self.elements_per_pixel, per_probe / math.prod(sizes))
        return Measurement(
            sizes, (batch, self.channels, *sizes), elements, bool(mode.records.compressed), per_probe
        )

    @staticmethod
    def _backward(
        outputs: list[torch.Tensor], inputs: list[torch.Tensor], seeds: list[torch.Tensor]
    ) -> Sequence[torch.Tensor | None]:
        if not outputs:
            return [None] * len(inputs)
        try:
            with torch.inference_mode(False), torch.enable_grad():
                return torch.autograd.grad(outputs, inputs, grad_outputs=seeds, allow_unused=True)
        except RuntimeError as e:  # e.g. a tensor saved for backward was modified in place
            raise ForwardFailed(e) from e

    def _captured(self, captured: dict[str, Any], target: Target) -> torch.Tensor:
        if target.name not in captured:
            raise ProbeError(
                f"'{target.name}' never ran during the forward pass (a module defined but not called, "
                "or a call count beyond its calls); pick a node that the forward uses"
            )
        where = "the model" if target.locator.kind == "output" else f"node '{target.name}'"
        tensor = select_output(captured[target.name], target.output, where)
        return tensor

    def _check_finite(self, gradient: torch.Tensor, mode: ProbeMode) -> None:
        first = mode.records.first_nonfinite
        if first is None and all_finite(gradient):
            return
        if first is not None:
            name, consumers = first
            after = f" (it comes from the backward of {', '.join(consumers)})" if consumers else ""
            raise ProbeError(
                f"NaN or Inf appears in the gradient of '{name}'{after}. The backward of that op "
                "produces non-finite values for this input; check the op, or probe an earlier node."
            )
        raise ProbeError(
            "NaN or Inf appears in the gradient of the input itself (the first op's backward)"
        )
