"""Finding an input large enough, and the field of a feature map in it.

For each probed map a :class:`Search` decides what to measure next:

1. Measure the centre unit and its two neighbours on each axis at the current input size, in
   ``local`` mode (global spatial reductions cut, and recorded when they reach the unit).
2. If no pixel receives gradient, the map's main path itself went through a global reduction:
   the field is global along the axes those reductions mix; measure the rest in ``full`` mode.
3. Per axis: if the centre unit's support touches the input border (or a neighbour's does on
   both sides), the field may be cut off: grow that axis by half, up to ``max_size`` (beyond
   it, an error that says how to go further).
4. If three adjacent units do not settle the period (after upsampling), measure a window of
   units around the centre, at the same size.
5. ``mode="full"``: once the local field is known, if global reductions reach the unit, the
   field is global along their axes; the other axes are measured again following them.

:func:`run_searches` drives many searches at once (``sweep``): searches at the same input size
and mode share one forward and one backward, in chunks that fit a memory budget.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from fractions import Fraction

from rfarith.errors import ProbeError, RFError, ShapeError

from .fitting import (
    MAX_PERIOD,
    WINDOW,
    AxisFit,
    Span,
    contradiction,
    cut_axis,
    fit_axis,
    global_axis,
    unfitted,
)
from .measure import Element, Measurement, Request, Session, Target, UnitSpec, root_cause

MEMORY_BUDGET = 2**30  # bytes one measurement may use for the probe's tensors
BYTES_PER_ELEMENT = 64  # per float64 element a forward produces: value, saved copies, gradient
GROWTH = 1.5  # an input too small for the field grows by this factor
SIZE_DEPENDENT_GROWTHS = 5  # growths through size-dependent ops before a field that never fits is refused
CONFIRMATIONS = 2  # growths to check that an irregular field is not cut inside the model
ELEMENTS_PER_PIXEL = 8  # tensor elements a collapsed probe produces per input pixel, until measured


@dataclass
class Outcome:
    """The settled answer of one search."""

    fits: tuple[AxisFit, ...]
    global_axes: frozenset[int]
    elements: list[Element]
    measurement: Measurement
    local: bool
    reached: tuple[str, ...]
    fallback: bool
    growth_refused: str = ""  # see Search.growth_refused

    @property
    def size_dependent(self) -> tuple[str, ...]:
        """Ops before the map whose geometry follows the input size (adaptive pooling...)."""
        return next(e.size_dependent for e in self.elements if e.request.spec.kind == "centre")

    @property
    def box_holes(self) -> bool:
        return holes_seen(self.elements, self.measurement.sizes)


def holes_seen(elements: Sequence[Element], sizes: tuple[int, ...]) -> bool:
    """Whether the centre unit, or a unit of the window or phase grid around it (a periodic
    field's other phases), leaves a pixel of its box unseen while inside the input. The side
    neighbours are not asked: two units further, a field may reach zero padding or a crop
    inside the model, where it has holes that interior units do not. Nor are banded steps:
    their support is the union of several units' fields, with gaps of its own."""
    return any(
        e.box_holes
        and all(s is not None and s.within(size - 1).whole for s, size in zip(e.spans, sizes))
        for e in elements
        if e.unit and e.request.spec.kind in ("centre", "step", "phase") and not e.request.spec.band
    )


@dataclass
class Search:
    """The state of finding one map's field (see the module docstring)."""

    target: Target
    user_sizes: tuple[int, ...]
    sizes: tuple[int, ...]
    max_size: int
    want_full: bool = False
    unit: tuple[int, ...] | None = None
    keep_heatmap: bool = True
    cost: int = 0  # tensor elements one probe's forward produces at user_sizes (0: unknown)
    local: bool = True
    fallback: bool = False
    global_axes: frozenset[int] = frozenset()
    reached: tuple[str, ...] = ()
    covered_always: tuple[bool, ...] = ()
    grown_through_size_dependent: int = 0  # times the input grew through such ops, the field not fitting
    window: frozenset[int] = frozenset()
    outcome: Outcome | None = None
    error: Exception | None = None
    known_n: dict[tuple[int, ...], tuple[int, ...]] = field(default_factory=dict)
    visible: dict[tuple[tuple[int, ...], bool], tuple[tuple[int, int], ...]] = field(
        default_factory=dict
    )
    visible_ends: list[dict[int, int]] = field(default_factory=list)  # axis: size -> last seen
    strictness: int = 0  # grow keeping more residues of the user's size (see keeping_residues)
    # the sizes the last growth aimed at: a model that rejects them is tried at stricter sizes
    # near them, not ever further from them (each rejected forward may cost much memory)
    aimed_at: tuple[int, ...] | None = None
    may_realign: bool = True  # False for a head start, which the caller drops if it is rejected
    confirmations: int = 0  # growths to tell a truly irregular field from one cut inside the model
    centre_shift: int = 0  # units the probed centre moved because the centre unit saw nothing
    periodic: frozenset[int] = frozenset()  # axes known to be periodic: always measure a window
    # the caller knows the period of every axis (crosscheck passes rfarith's exact periods as
    # ``periodic``): no window is added after upsampling ops on the other axes
    periods_known: bool = False
    # offsets from the centre of every phase combination of a field periodic along several
    # axes, and the input sizes they are measured at (see _phase_grid)
    phases: tuple[tuple[int, ...], ...] = ()
    phase_sizes: tuple[int, ...] = ()
    accepted: tuple[int, ...] | None = None  # the last input sizes the model ran at
    # why the input may not grow past ``accepted`` (the model rejected every larger input it
    # was given): the field is then read there, cut at the border (see ``box_in``)
    growth_refused: str = ""

    @property
    def settled(self) -> bool:
        return self.outcome is not None or self.error is not None

    @property
    def n_axes(self) -> int:
        return len(self.sizes)

    def requests(self) -> list[Request]:
        wants_centre_map = self.keep_heatmap and self.unit is None
        shift = self.centre_shift
        requests = [Request(self.target, UnitSpec("centre", shift=shift), wants_centre_map)]
        if (self.sizes, self.local) not in self.visible:
            requests.append(Request(self.target, UnitSpec("all")))
        if self.unit is not None:
            requests.append(
                Request(self.target, UnitSpec("fixed", unit=self.unit), self.keep_heatmap)
            )
        windowed = self.window | self.periodic
        for axis in range(self.n_axes):
            if axis in windowed:
                band = self._band(axis, windowed)
                offsets = [o for o in range(-WINDOW, WINDOW + 1) if o != 0 or band]
                requests += [
                    Request(self.target, UnitSpec("step", axis, o, shift=shift, band=band))
                    for o in offsets
                ]
            else:
                requests += [Request(self.target, UnitSpec("side", axis, o, shift=shift)) for o in (1, 2)]
        if self.phase_sizes == self.sizes:
            requests += [Request(self.target, UnitSpec("phase", unit=o, shift=shift)) for o in self.phases]
        n = self.known_n.get(self.sizes)
        if n is not None:  # the map's size at this input is known: skip units it does not have
            requests = [
                r
                for r in requests
                if r.spec.kind in ("centre", "fixed", "all") or r.spec.resolve(n) is not None
            ]
        return requests

    def _band(self, axis: int, windowed: frozenset[int]) -> tuple[int, ...]:
        """For a window along ``axis`` while other axes are periodic too: each step's seed spans
        ``MAX_PERIOD`` units along those axes, so its span along ``axis`` is the union over
        their phases. A field that is not a product of per-axis fields (a branch that reaches
        only every third column, merged with one that reaches all) then shows along ``axis`` what
        rfarith's per-axis field holds, whichever column the centre is in. () if none is."""
        others = windowed - {axis}
        if not others:
            return ()
        return tuple(MAX_PERIOD if b in others else 1 for b in range(self.n_axes))

    def update(self, measurement: Measurement) -> None:
        """Read this search's elements of ``measurement`` and decide the next step."""
        elements = [e for e in measurement.elements if e.request.target == self.target]
        centre = next(e for e in elements if e.request.spec.kind == "centre")
        self._check_map(centre)
        self.accepted = measurement.sizes
        self.known_n[measurement.sizes] = centre.n
        if centre.empty:
            self._visible(elements, centre)  # records whether any unit of the map sees a pixel
            self._no_support(centre)
            return
        visible = self._visible(elements, centre)
        by_axis = self._spans_by_axis(elements, centre, self._edges(visible))
        own = [by_axis[a][centre.unit[a]] for a in range(self.n_axes)]
        free = [a for a in range(self.n_axes) if a not in self.global_axes]
        touching = {
            a
            for a in free
            if not own[a].whole or any(s is not None and not s.usable for s in by_axis[a].values())
        }
        covers = tuple(own[a].covers(*visible[a]) for a in range(self.n_axes))
        self.covered_always = tuple(c and b for c, b in zip(covers, self.covered_always or covers))
        cut = set(touching) if self.growth_refused else set()  # the input may not grow: read it cut
        touching -= cut
        free = [a for a in free if a not in cut]
        if touching:
            self._refuse_to_chase(centre)
            self._grow(touching)
            if touching - self.global_axes:  # some axis grew: measure again
                return
        unsettled = frozenset(free) - self.periodic
        if centre.periodic_ops and unsettled and max(centre.n) > 1 and not self.periods_known:
            # an upsampling (or the like) ran before the map: its field may repeat only every
            # few units, which three adjacent units cannot tell; a window of units decides
            self.periodic = self.periodic | unsettled
            return
        fits = [
            global_axis(*self._user_visible(a))
            if a in self.global_axes
            else cut_axis(self.growth_refused)
            if a in cut
            else fit_axis(
                by_axis[a], centre.unit[a], centre.n[a], a in self.window or a in self.periodic, a in self.periodic
            )
            for a in range(self.n_axes)
        ]
        missing = frozenset(a for a, f in enumerate(fits) if f.needs_window)
        if missing:
            self.window = self.window | missing
            return
        # a summary that does not reproduce every unit it was fitted on is never reported
        contradicted = {
            a: reason
            for a in free
            if (reason := contradiction(fits[a], by_axis[a], visible[a])) is not None
        }
        suspect = self._clipped_irregular(fits, by_axis, free, contradicted)
        if suspect:
            self._grow(suspect)
            return
        fits = [
            unfitted(f, contradicted[a]) if a in contradicted else f for a, f in enumerate(fits)
        ]
        if self.local and self.want_full and centre.reached:
            self._follow_global(centre)
            return
        if self.phase_sizes != self.sizes and not holes_seen(elements, measurement.sizes):
            self.phases = self._phase_grid(fits, free)
            if self.phases:
                self.phase_sizes = self.sizes
                return
        reached = self.reached or centre.reached
        self.outcome = Outcome(
            tuple(fits), self.global_axes, elements, measurement, self.local, reached, self.fallback,
            self.growth_refused,
        )

    def _phase_grid(self, fits: list[AxisFit], free: list[int]) -> tuple[tuple[int, ...], ...]:
        """For a field periodic along two or more axes: the offsets from the centre of one unit
        of every combination of phases, the centre's own left out. Steps along one axis keep
        the others at the centre's phase (or band them), but a field that is not a product of
        per-axis fields can leave a pixel of a unit's box unseen at one combination only (a
        branch's window next to, not around, another branch's pixel). () when at most one axis
        is periodic: the window's steps hold every phase then."""
        periods = [fits[a].period if a in free and not fits[a].unresolved else 1 for a in range(self.n_axes)]
        if sum(p > 1 for p in periods) < 2:
            return ()
        return tuple(o for o in itertools.product(*(range(p) for p in periods)) if any(o))

    def _clipped_irregular(
        self,
        fits: list[AxisFit],
        by_axis: list[dict[int, Span | None]],
        free: list[int],
        contradicted: dict[int, str],
    ) -> set[int]:
        """Axes to measure again on a larger input: their units looked nonuniform or periodic
        (a window of units was measured) while some of them were cut at a border, or no period
        explained the window at all, or the fit does not reproduce every unit it was fitted on
        (``contradicted``). Zero padding or a crop inside the model cuts the fields of
        the units near its ends (not only at the input's border, so such units can look whole),
        which makes a uniform field look irregular; on a larger input the units around the
        centre lie clear of it. Up to
        ``CONFIRMATIONS`` times per search; a field still irregular then is reported as such."""
        if self.confirmations >= CONFIRMATIONS or self.growth_refused:
            return set()
        axes = {
            a
            for a in free
            if (
                (fits[a].nonuniform or isinstance(fits[a].j, Fraction) or a in self.window or a in self.periodic)
                and any(s is not None and not s.whole for s in by_axis[a].values())
                or fits[a].aperiodic  # the window may reach units next to a pad inside the model
                or a in contradicted
            )
            and self.sizes[a] < self.max_size
        }
        if axes:
            self.confirmations += 1
        return axes

    # -- steps -------------------------------------------------------------------------------
    def _refuse_to_chase(self, centre: Element) -> None:
        """A field that still does not fit after the input grew through ops whose windows may
        grow with the input (adaptive pooling to a fixed size, a resize to a given size) may
        never fit: say so. Such an op can also keep its ratio (a segmentation head resizing
        a stride-8 map to the input's size), where the field fits on a large enough input:
        the input grows ``SIZE_DEPENDENT_GROWTHS`` times (about 7.6x) before the probe gives up (the
        warning then says the field was measured at another size than the user's)."""
        if not centre.size_dependent:
            return
        if self.grown_through_size_dependent >= SIZE_DEPENDENT_GROWTHS:
            raise ProbeError(
                f"the field of '{self.target.name}' grows with the input: "
                f"{', '.join(centre.size_dependent)} scales its windows with the input size, so the "
                f"field did not fit at input size {self.sizes} either. Probe a node before it, or read "
                "the field at the input size with rfarith.",
                kind="size_dependent",
            )
        self.grown_through_size_dependent += 1

    def _check_map(self, centre: Element) -> None:
        if not centre.connected:
            raise ProbeError(
                f"'{self.target.name}' does not depend on the model input (no gradient path from it to the "
                "input): nothing to measure. Probe a node computed from the input."
            )
        if any(size == 0 for size in centre.n):
            raise ShapeError(
                f"'{self.target.name}' has no units (map size {centre.n}) for input size {self.sizes}: "
                "the input is too small for this model. Use a larger input_shape.",
                node=self.target.name,
            )

    def _no_support(self, centre: Element) -> None:
        if not centre.reached and self._map_sees_something() and self.centre_shift < MAX_PERIOD:
            # a unit of a phase that sees nothing (a transposed conv with kernel < stride): move on
            self.centre_shift += 1
            return
        if not centre.reached and self.confirmations < CONFIRMATIONS and not self.growth_refused:
            # no global reduction was cut: the centre unit may see only zero padding inside
            # the model, which a larger input moves away from it
            growable = {
                a for a in range(self.n_axes)
                if a not in self.global_axes and self.sizes[a] < self.max_size
            }  # fmt: skip
            if growable:
                self.confirmations += 1
                self._grow(growable)
                return
        if self.local:  # every path to the input passes a global reduction
            self.fallback = True
            self._follow_global(centre)
            return
        raise ProbeError(
            f"unit {centre.unit} of '{self.target.name}' receives no gradient from any input pixel "
            f"(input size {self.sizes}). With weights='real' the model's own nonlinearities can block "
            "every path; weights='structural' measures what the architecture allows."
        )

    def _map_sees_something(self) -> bool:
        """Whether some unit of the map saw a pixel at the current size and mode."""
        return (self.sizes, self.local) in self.visible

    def _follow_global(self, centre: Element) -> None:
        """Measure again in full mode: global along the axes the reached reductions mix."""
        self.reached = centre.reached
        self.global_axes = self.global_axes | (centre.reached_axes or frozenset(range(self.n_axes)))
        self.local = False
        self.window = frozenset()

    def _visible(self, elements: Sequence[Element], centre: Element) -> tuple[tuple[int, int], ...]:
        """Per axis, the first and last pixel some unit of the map sees (cached per size)."""
        key = (self.sizes, self.local)
        every = next((e for e in elements if e.request.spec.kind == "all"), None)
        if every is not None and not every.empty:
            self.visible[key] = tuple((s.lo, s.hi) for s in every.spans)
        return self.visible.get(key, tuple((0, size - 1) for size in self.sizes))

    def _user_visible(self, axis: int) -> tuple[int, int]:
        """First and last pixel the map sees along ``axis`` at the user's input size (the
        whole axis if it was not measured there)."""
        for local in (True, False):
            seen = self.visible.get((self.user_sizes, local))
            if seen is not None:
                return seen[axis]
        return 0, self.user_sizes[axis] - 1

    def _edges(self, visible: tuple[tuple[int, int], ...]) -> tuple[int, ...]:
        """Per axis, the last pixel a field may reach without counting as cut off: the last one
        the map sees, unless that stayed put while the input grew (a crop): then the input's."""
        if not self.visible_ends:
            self.visible_ends = [{} for _ in range(self.n_axes)]
        edges = []
        for a, (size, (_, last)) in enumerate(zip(self.sizes, visible)):
            ends = self.visible_ends[a]
            ends[size] = last
            anchored = len(ends) > 1 and len(set(ends.values())) < len(ends)
            edges.append(size - 1 if anchored else last)
        return tuple(edges)

    def _spans_by_axis(
        self, elements: Sequence[Element], centre: Element, edges: tuple[int, ...]
    ) -> list[dict[int, Span | None]]:
        """Per axis, the spans of the centre and the units beside it along that axis, cut where
        they reach pixel 0 or the axis's edge."""
        by_axis: list[dict[int, Span | None]] = [{} for _ in range(self.n_axes)]
        banded = {e.request.spec.axis for e in elements if e.request.spec.band}
        for e in elements:
            if not e.unit or e.request.spec.kind in ("fixed", "phase"):
                continue
            spec = e.request.spec
            for a in range(self.n_axes):
                if (a in banded) != bool(spec.band) or (spec.band and a != spec.axis):
                    continue  # a banded axis reads its banded steps only, and they no other axis
                if all(u == c for b, (u, c) in enumerate(zip(e.unit, centre.unit)) if b != a):
                    span = e.spans[a]
                    by_axis[a][e.unit[a]] = span.within(edges[a]) if span is not None else None
        return by_axis

    def realign(self) -> bool:
        """After the model rejected a grown input: move to the nearest size at least as large
        as the growth aimed at that keeps more residues of the user's size (up to
        ``STRICTNESS`` times, and up to ``REALIGN_REACH`` times that size). False if there is
        none left to try, or for a head start (``may_realign``)."""
        if self.sizes == self.user_sizes or not self.may_realign:
            return False
        aimed_at = self.aimed_at or self.sizes
        while self.strictness < STRICTNESS:
            self.strictness += 1
            sizes = tuple(
                min(keeping_residues(s, u, self.strictness), max(self.max_size, u))
                for s, u in zip(aimed_at, self.user_sizes)
            )
            if any(s > REALIGN_REACH * a for s, a in zip(sizes, aimed_at)):
                return False  # much larger than the growth aimed at: a rejected forward costs memory
            if sizes != self.sizes:
                self.sizes = sizes
                self.window = frozenset()
                return True
        return False

    def box_in(self, refusal: RFError) -> bool:
        """After the model rejected every larger input tried (``realign`` found none left):
        measure again at the last size it accepted and read the field there, cut at the border
        where it does not fit (the axes' j, r, start NaN, flag ``clipped``, see ``cut_axis``).
        False if the model accepted no size (its error stands)."""
        if self.accepted is None or self.growth_refused:
            return False
        own = root_cause(refusal)  # the model's own error, not the probe's account of it
        reason = str(own).strip().splitlines()[0] if str(own).strip() else type(own).__name__
        self.growth_refused = (
            f"the model rejected every input larger than {self.accepted} that the probe tried "
            f"({reason}); j, r, start unknown"
        )
        self.sizes = self.accepted
        self.window = frozenset()
        return True

    def _grow(self, axes: set[int]) -> None:
        """Grow the touching axes; at max_size an axis seen whole at every size is global."""
        sizes = list(self.sizes)
        for a in sorted(axes):
            if sizes[a] < self.max_size:
                sizes[a] = min(grown(sizes[a], self.user_sizes[a], self.strictness), self.max_size)
                continue
            unknown = (
                " It covered the whole input at every size tried: if an op mixes all positions "
                "without being a reduction the probe knows, the field is global (mode='full' "
                "does not need a larger input)."
                if self.covered_always[a]
                else ""
            )
            raise ProbeError(
                f"the field of '{self.target.name}' is wider than max_size={self.max_size} along axis "
                f"{a}: its support still touches the input border at input size {tuple(sizes)}. Raise "
                f"max_size (e.g. max_size={2 * self.max_size}; memory grows with it) or pass "
                f"size_hint if the field size is known.{unknown}",
                kind="too_wide",
            )
        if tuple(sizes) != self.sizes:
            self.sizes = self.aimed_at = tuple(sizes)
            self.window = frozenset()


# Growth steps for a model that rejected a grown input: each a multiple of the one before (so a
# larger step keeps what a smaller one kept), dividing by the small strides 2, 3, 4, 5, 6, 8, 9...
DIVISIBLE_STEPS = (1, 2, 6, 12, 60, 120, 360, 720, 2520, 5040)
STRICTNESS = 3  # how many ever stricter growth steps to try after the model rejects an input
REALIGN_REACH = 2  # a stricter size is tried only up to this many times the size the growth aimed at


def keeping_residues(target: int, user: int, strictness: int = 0) -> int:
    """The smallest size ``>= target`` congruent to the user's size ``user`` modulo a step.

    The step is the largest power of two dividing ``user`` (a model that needs sizes divisible
    by its total stride keeps them). With ``strictness`` k > 0 it is also a multiple of the k-th
    of the ever more divisible steps (:data:`DIVISIBLE_STEPS`), or of a larger one where the
    growth ``target - user`` leaves room: for a model that crops or pads its branches by fixed
    amounts to make them match, every map's size then grows by a whole number of units, alike in
    every branch whose total stride divides the step, and the branches still match.
    """
    if target <= user:
        return user
    step = user & -user
    if strictness:
        steps = sorted({math.lcm(step, d) for d in DIVISIBLE_STEPS})
        least = steps[min(strictness, len(steps) - 1)]
        step = max([least, *(m for m in steps if m <= target - user)])
    return user + -(-(target - user) // step) * step


def grown(size: int, user: int, strictness: int = 0) -> int:
    """The next input size after ``size``: about half as large again, keeping the residues of
    the user's size ``user`` (:func:`keeping_residues`)."""
    return keeping_residues(max(math.ceil(GROWTH * size), size + 1), user, strictness)


def field_hint(r: Sequence[int], j: Sequence) -> tuple[int, ...]:
    """The field size to start a search from, per axis, for a field of ``r`` pixels and jump
    ``j``: the field and two jumps on either side, so that the units beside the centre the search
    measures lie inside the input too (next to a reflect or replicate border, a unit's field
    folds back and no longer shows the jump)."""
    return tuple(int(size) + 4 * math.ceil(step) for size, step in zip(r, j))


def start_sizes(
    user: Sequence[int], size_hint: int | Sequence[int] | None, max_size: int
) -> tuple[int, ...]:
    """Where the search starts: the user's input, or, along an axis where a field of
    ``size_hint`` pixels does not fit it, enough for that field with room around it (keeping
    the residues of the user's size: :func:`keeping_residues`). A field that fits starts at the
    user's input even without room: the border test grows it if it must (room added to a fit
    doubled a U-Net's input, 128 to 256, and a global map's, 224 to 288, in every compare)."""
    if size_hint is None:
        return tuple(user)
    hints = (
        (size_hint,) * len(user) if isinstance(size_hint, int) else tuple(int(h) for h in size_hint)
    )
    if len(hints) != len(user):
        raise ValueError(f"size_hint {size_hint!r} needs one size per spatial axis ({len(user)})")
    return tuple(
        u if h <= u else min(keeping_residues(h + max(8, h // 4), u), max(max_size, u))
        for u, h in zip(user, hints)
    )


def run_searches(
    session: Session, searches: Sequence[Search], budget: int = MEMORY_BUDGET, isolate: bool = False
) -> None:
    """Advance every search until it is settled, sharing measurements between searches at the
    same input size, mode and executor. With ``isolate``, a search that fails records its error
    (``search.error``) and the others go on; otherwise the error propagates."""
    per_probe: dict[tuple[int, ...], int] = {}
    while True:
        pending = [s for s in searches if not s.settled]
        if not pending:
            return
        groups: dict[tuple[tuple[int, ...], bool, bool], list[Search]] = {}
        for s in pending:
            groups.setdefault((s.sizes, s.local, s.target.in_graph), []).append(s)
        for (sizes, local, _), group in sorted(groups.items(), key=lambda kv: kv[0][0]):
            while group:  # unknown costs are re-estimated after each chunk, from what it cost
                chunk = _take(group, sizes, budget, _known_cost(per_probe, sizes))
                group = group[len(chunk) :]
                _advance(session, chunk, sizes, local, per_probe, isolate, budget)


def _advance(
    session: Session,
    chunk: list[Search],
    sizes: tuple[int, ...],
    local: bool,
    per_probe: dict,
    isolate: bool,
    budget: int = MEMORY_BUDGET,
) -> None:
    requests = [r for s in chunk for r in s.requests()]
    try:
        measurement = _measure_within(
            session,
            sizes,
            requests,
            local,
            _cost(chunk[-1], sizes, _known_cost(per_probe, sizes)),
            budget,
        )
    except RFError as e:
        if getattr(e, "kind", None) == "forward":  # the model may only accept certain sizes
            realigned = [s.realign() or s.box_in(e) for s in chunk]
            if any(realigned):
                rest = [s for s, moved in zip(chunk, realigned) if not moved]
                if rest:
                    _advance(session, rest, sizes, local, per_probe, isolate, budget)
                return
        if not isolate:
            raise
        if len(chunk) > 1:  # find which searches fail
            for s in chunk:
                _advance(session, [s], sizes, local, per_probe, isolate, budget)
        else:
            chunk[0].error = e
        return
    per_probe[sizes] = max(per_probe.get(sizes, 0), measurement.elements_per_probe)
    for s in chunk:
        try:
            s.update(measurement)
        except RFError as e:
            if not isolate:
                raise
            s.error = e


def _area(sizes: Sequence[int]) -> int:
    area = 1
    for s in sizes:
        area *= s
    return area


def _measure_within(
    session: Session,
    sizes: tuple[int, ...],
    requests: list[Request],
    local: bool,
    cost: int,
    budget: int,
) -> Measurement:
    """One measurement of ``requests``, split into several forwards if one would not fit the
    memory budget (a single large map at a large input)."""
    per_forward = probes_per_forward(cost, budget)
    if len(requests) <= per_forward:
        return session.measure(sizes, requests, local)
    return Measurement.merge(
        [
            session.measure(sizes, requests[i : i + per_forward], local)
            for i in range(0, len(requests), per_forward)
        ]
    )


def probes_per_forward(cost: int, budget: int = MEMORY_BUDGET) -> int:
    """How many probes (batch elements) of ``cost`` tensor elements each one forward may hold
    within ``budget`` bytes (at least one)."""
    return max(1, budget // max(1, cost * BYTES_PER_ELEMENT))


def _known_cost(per_probe: dict[tuple[int, ...], int], sizes: tuple[int, ...]) -> int:
    """Tensor elements one probe produced at ``sizes``, else the most per input pixel any
    measurement produced, scaled to ``sizes`` (a collapsed probe's tensors grow with the input's
    area); 0 if nothing was measured yet."""
    if sizes in per_probe:
        return per_probe[sizes]
    rates = [elements / _area(measured) for measured, elements in per_probe.items() if len(measured) == len(sizes)]
    return math.ceil(max(rates) * _area(sizes)) if rates else 0


def _cost(search: Search, sizes: tuple[int, ...], measured: int) -> int:
    """Tensor elements one probe of ``search`` produces at ``sizes``: its map's cost at the
    user's input scaled by area, else what a probe cost in an earlier measurement."""
    if search.cost:
        return search.cost * _area(sizes) // max(1, _area(search.user_sizes))
    return measured or ELEMENTS_PER_PIXEL * _area(sizes)


def _take(group: list[Search], sizes: tuple[int, ...], budget: int, measured: int) -> list[Search]:
    """The first searches of ``group`` that one measurement at ``sizes`` can hold within
    ``budget`` bytes (at least one)."""
    chunk: list[Search] = []
    probes = 0
    deepest = 0
    for s in group:
        cost = _cost(s, sizes, measured)
        size = len(s.requests())
        if chunk and (probes + size) * max(deepest, cost) * BYTES_PER_ELEMENT > budget:
            break
        chunk.append(s)
        probes += size
        deepest = max(deepest, cost)
    return chunk
