"""``rfnumeric.probe``: the receptive field of one feature map, measured by gradients."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

from torch import nn

import rfarith
from rfarith.errors import ProbeError, RFError
from rfarith.tracing import module_outputs

from .measure import Element, Session, Target
from .result import CUT_NOTE, JUMP_NOTE, ProbeResult
from .search import Outcome, Search, field_hint, run_searches, start_sizes

MODES = ("local", "full")


def check_mode(mode: str) -> bool:
    """``True`` for 'local', ``False`` for 'full'; anything else is an error."""
    if mode not in MODES:
        raise ValueError(f"mode must be 'local' or 'full', got {mode!r}")
    return mode == "local"


def probe(
    model: nn.Module,
    input_shape: Sequence[int],
    node: str | None = None,
    unit: Sequence[int] | None = None,
    mode: str = "local",
    weights: str = "structural",
    size_hint: int | Sequence[int] | None = None,
    output: int | str | None = None,
    max_size: int = 4096,
) -> ProbeResult:
    """Measure which input pixels one unit of a feature map sees, by backpropagating from it.

    ``model`` is any ``nn.Module`` (``torch.fx`` need not trace it); it is never modified: the
    probe runs on a deep copy. ``input_shape`` is ``(batch, channels, *spatial)`` with 1 to 3
    spatial axes; the probe grows the spatial sizes until the field fits (up to ``max_size``
    per axis), starting from ``size_hint`` (the expected field size per axis) if given.

    Without ``size_hint``, a model that ``torch.fx`` traces starts from the size of the field
    rfarith computes for the map, where it exceeds ``input_shape`` (the probe's own border test
    still decides whether the field fits, so a wrong start costs time, never the answer); any
    other model starts from ``input_shape``.

    ``node`` is a node name as rfarith names them (``'features.3'``, ``'layer1.0.relu_1'``,
    ``'add'``) or a module path; ``None`` probes the model output. ``output`` picks one tensor
    when the node returns several (index or dict key). ``unit`` is the unit to report bounds,
    support and heatmap for (default: the centre unit); r, j and start always come from the
    centre unit and its neighbours.

    ``weights='structural'`` (default) measures the field the architecture allows: positive
    weights, nonlinearities as identities, max pooling as average pooling, no cancellation.
    ``weights='real'`` keeps the model's parameters and ops (its support can be smaller).
    ``mode='local'`` (default) does not follow global spatial reductions (squeeze-excite
    pooling, normalisation statistics) and flags them ``global``; ``'full'`` follows them.

    >>> import torch.nn as nn, rfnumeric
    >>> net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(8, 8, 3))
    >>> p = rfnumeric.probe(net, (1, 3, 32, 32))
    >>> p.r, p.j, p.start
    ((8, 8), (2, 2), (3.0, 3.0))
    """
    local = check_mode(mode)
    if not isinstance(max_size, int) or max_size < 1:
        raise ValueError(f"max_size must be a positive int, got {max_size!r}")
    session = Session(model, input_shape, weights)
    target = session.target(node, output)
    user = session.shape[2:]
    requested = _check_unit(unit, len(user))
    given = start_sizes(user, size_hint, max_size)
    start = (analytic_start(model, session.shape, target, max_size) if size_hint is None else None) or given
    search = Search(target, user, start, max_size, want_full=not local, unit=requested, may_realign=start == tuple(user))
    try:
        run_searches(session, [search])
    except RFError as e:
        if start == tuple(user) or getattr(e, "kind", None) != "forward":
            raise
        # the model rejects the larger start (the analytic field's or the hint's; it accepts one
        # input size, say): a head start only ever saves time, so search again from the user's input
        search = Search(target, user, tuple(user), max_size, want_full=not local, unit=requested)
        run_searches(session, [search])
    assert search.outcome is not None
    warn_if_size_dependent({target.name: search.outcome}, user)
    return build_result(session, search.outcome, requested, weights)


def analytic_start(
    model: nn.Module, input_shape: tuple[int, ...], target: Target, max_size: int
) -> tuple[int, ...] | None:
    """Where a probe without a size hint starts: large enough for rfarith's field of the probed
    map, where that field does not fit ``input_shape``. ``None`` (start from ``input_shape``)
    when rfarith cannot analyse the model or the map, or its field is wholly global or a single
    unit (a global field's extent follows the input; it is measured where the user asked)."""
    user = tuple(input_shape[2:])
    if target.output is not None:
        return None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            report = rfarith.analyze(model, input_shape)
            names = report.output_names
            name = names.get("output") if target.locator.kind == "output" else target.name
            if target.locator.kind == "module" and name not in report:
                name = module_outputs(report.names, [name]).get(name)
            if name is None or name not in report:
                return None
            rf = report[name]
    except Exception:  # noqa: BLE001 - any failure of the arithmetic only loses the head start
        return None
    if any(j == 0 for j in rf.j):  # wholly global; a local hull beside a global path is a start
        return None
    hint = field_hint(rf.r, rf.j)
    if all(h <= u for h, u in zip(hint, user)):  # the field fits where the user asked
        return None
    return tuple(max(s, u) for s, u in zip(start_sizes(user, hint, max_size), user))


def _check_unit(unit: Any, n_axes: int) -> tuple[int, ...] | None:
    if unit is None:
        return None
    unit = (unit,) if isinstance(unit, int) else tuple(int(u) for u in unit)
    if len(unit) != n_axes:
        raise ValueError(f"unit {unit} needs one index per spatial axis ({n_axes})")
    return unit


class GrownInputWarning(UserWarning):
    """A field was measured on a larger input than asked, through ops whose geometry follows
    the input size (adaptive pooling, resampling to a fixed size or with align_corners=True):
    at the asked size it may differ."""


def warn_if_size_dependent(outcomes: dict[str, Outcome], user_sizes: tuple[int, ...]) -> None:
    """Warn about fields measured on a grown input through size-dependent ops."""
    grown = {
        name: o for name, o in outcomes.items()
        if o.measurement.sizes != tuple(user_sizes) and o.size_dependent
    }  # fmt: skip
    if not grown:
        return
    names = list(grown)
    first = grown[names[0]]
    more = f" (and {len(names) - 1} more maps)" if len(names) > 1 else ""
    warnings.warn(
        f"the field of '{names[0]}'{more} does not fit input size {tuple(user_sizes)} and was "
        f"measured at {first.measurement.sizes}, where {', '.join(first.size_dependent)} "
        "(whose windows follow the input size) work differently: at the asked size the field may "
        "differ. rfarith's arithmetic gives it at that size.",
        GrownInputWarning,
        stacklevel=3,
    )


def build_result(
    session: Session, outcome: Outcome, requested: tuple[int, ...] | None, weights: str
) -> ProbeResult:
    """Assemble the public record from a search's outcome."""
    elements = outcome.elements
    centre = next(e for e in elements if e.request.spec.kind == "centre")
    probed = (
        centre if requested is None else next(e for e in elements if e.request.spec.kind == "fixed")
    )
    sizes = outcome.measurement.sizes
    if probed.unit is None:
        raise ValueError(
            f"unit {requested} is outside the map of '{centre.request.target.name}' (n = {centre.n} at input "
            f"size {sizes})"
        )
    if probed.empty:
        raise ProbeError(
            f"unit {probed.unit} of '{centre.request.target.name}' sees no input pixel (its window lies in the "
            "padding); probe another unit"
        )
    fits = outcome.fits
    flags = outcome_flags(outcome)
    if any(
        a not in outcome.global_axes and not span.within(size - 1).whole
        for a, (span, size) in enumerate(zip(probed.spans, sizes))
    ):
        flags.add("clipped")
    return ProbeResult(
        node=centre.request.target.name,
        axes=session.axes,
        unit=probed.unit,
        n=centre.n,
        r=tuple(f.r for f in fits),
        j=tuple(f.j for f in fits),
        start=tuple(f.start for f in fits),
        bounds=_bounds(probed),
        flags=frozenset(flags),
        global_via=outcome.reached,
        heatmap=probed.heatmap,
        support=tuple(span.pixels() for span in probed.spans),
        input_shape=outcome.measurement.input_shape,
        mode="local" if outcome.local else "full",
        weights=weights,
        measured=_measured_units(elements),
        notes=fit_notes(session.axes, fits),
        growth_refused=outcome.growth_refused,
    )


def fit_notes(axes: tuple[str, ...], fits) -> tuple[str, ...]:
    """Why an axis has no single jump (a note per such axis), or no extent past the border of an
    input that may not grow (one note naming the axes): :attr:`ProbeResult.notes`."""
    jumps = tuple(f"{JUMP_NOTE} along {axis}: {fit.reason}" for axis, fit in zip(axes, fits) if fit.reason and not fit.cut)
    cut = [(axis, fit.reason) for axis, fit in zip(axes, fits) if fit.cut]
    if not cut:
        return jumps
    return (*jumps, f"{CUT_NOTE} along {', '.join(axis for axis, _ in cut)}: {cut[0][1]}")


def outcome_flags(outcome: Outcome) -> set[str]:
    """The flags a settled search carries (``clipped`` only for a field cut along an axis; a
    unit's own span at the border adds it per unit)."""
    flags = set()
    if any(f.cut for f in outcome.fits):
        flags.add("clipped")
    if outcome.fallback or outcome.reached or outcome.global_axes:
        flags.add("global")
    if any(f.holes for f in outcome.fits) or outcome.box_holes:
        flags.add("holes")
    if any(f.nonuniform for f in outcome.fits):
        flags.add("nonuniform")
    if outcome.measurement.compressed:
        flags.add("underflow")
    return flags


def _measured_units(elements: list[Element]) -> dict[tuple[int, ...], tuple[tuple[int, int], ...]]:
    """Per unit measured on its own, its bounds. A banded step (a seed spanning several units
    across the other periodic axes: see ``Search._band``) is left out: its spans are the union
    of the band's units, not what its first unit sees."""
    return {
        e.unit: _bounds(e)
        for e in elements
        if e.unit is not None and not e.empty and not e.request.spec.band
    }


def _bounds(element: Element) -> tuple[tuple[int, int], ...]:
    return tuple((span.lo, span.hi) for span in element.spans)
