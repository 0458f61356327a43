"""What crosscheck asks of the probe, for many feature maps at once.

For every compared node: its field (the probe's search, started at the smallest input that
holds the analytic field: the size hint), and the exact supports of chosen units at exactly a
given input (the user's, or the one the search grew to). One private copy of the model serves every node, and measurements at
the same input size and mode share one forward and one backward (rfnumeric's search machinery,
as its sweep uses it). The one place that talks to rfnumeric's internals.
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

from torch import nn

import rfnumeric
from rfarith.errors import ProbeError, RFError
from rfnumeric.capture import Locator
from rfnumeric.measure import ForwardFailed, Request, Session, Target, UnitSpec
from rfnumeric.mode import Retry
from rfnumeric.probe import build_result
from rfnumeric.search import (
    ELEMENTS_PER_PIXEL,
    MEMORY_BUDGET,
    Search,
    _measure_within,
    run_searches,
    start_sizes,
)
from rfnumeric.sweep import same_tensor

from .verdict import Support


@dataclass(frozen=True)
class UnitSupport:
    """What one unit sees of the actual input, per axis: (lo, hi) or None, and the pixels."""

    unit: tuple[int, ...]
    bounds: tuple[tuple[int, int] | None, ...]
    pixels: tuple[tuple[int, ...], ...]


@dataclass(frozen=True)
class UnitsAt:
    """A map's size and the exact support of each asked unit, measured at input ``sizes``
    (``None``: the map has no such unit)."""

    sizes: tuple[int, ...]
    n: tuple[int, ...]
    supports: dict[tuple[int, ...], Support | None]


UNITS_PER_MEASUREMENT = 64  # seeds one measurement of unit supports carries at most


class Prober:
    """One private copy of the model, measured for many feature maps: their fields (the
    probe's search, started at a size hint) and the exact supports of chosen units at any
    input size. Measurements at one size share forwards and backwards."""

    def __init__(self, model: nn.Module, input_shape: Sequence[int], mode: str, max_size: int) -> None:
        self.session = Session(model, input_shape, "structural")
        self.user = tuple(self.session.shape[2:])
        self.local = mode == "local"
        self.max_size = max_size
        self._targets: dict[str, Target | RFError] = {}
        self._shared: dict[str, str] | None = None

    def target(self, name: str) -> Target:
        """The probe's handle on ``name``; raises the RFError that says why it has none."""
        if name not in self._targets:
            try:
                self._targets[name] = self.session.target(name)
            except RFError as e:  # a node the probe cannot address (a function call without fx)
                self._targets[name] = e
        found = self._targets[name]
        if isinstance(found, RFError):
            raise found
        return found

    def shared(self, names: Sequence[str]) -> dict[str, str]:
        """Nodes holding the very tensor an earlier one holds (see :func:`identical_maps`)."""
        if self._shared is None:
            targets = {}
            for name in names:
                try:
                    targets[name] = self.target(name)
                except RFError:
                    pass
            self._shared = identical_maps(self.session, targets, self.local)
        return self._shared

    def fields(
        self,
        plans: dict[str, tuple[Sequence[int], frozenset[int]]],
        progress: Callable[[int, int, str], None] | None = None,
        chunk: int = 32,
    ) -> dict[str, rfnumeric.ProbeResult | Exception]:
        """Each node's field as the probe's search finds it, started at its size hint
        (``plans``: node -> (hint per axis, axes known to be periodic)). Searches run ``chunk``
        nodes at a time, and ``progress(done, total, node)`` follows them."""
        results: dict[str, rfnumeric.ProbeResult | Exception] = {}
        shared = self.shared(list(plans))
        searches: dict[str, Search] = {}
        for name, (hint, periodic) in plans.items():
            if name in shared:
                continue
            try:
                target = self.target(name)
            except RFError as e:
                results[name] = e
                continue
            start = start_sizes(self.user, hint, self.max_size)
            searches[name] = Search(target, self.user, start, self.max_size, want_full=not self.local, keep_heatmap=False, periodic=periodic, periods_known=True)
        pending = list(searches.values())
        with warnings.catch_warnings():  # crosscheck states size-dependent growth as a reason itself
            warnings.simplefilter("ignore", rfnumeric.GrownInputWarning)
            for first in range(0, len(pending), chunk):
                part = pending[first : first + chunk]
                run_searches(self.session, part, isolate=True)
                _retry_at_user_size(self.session, part, searches, self.user, self.max_size, self.local)
                if progress is not None:
                    progress(first + len(part), len(pending), part[-1].target.name)
        for name, search in searches.items():
            if search.outcome is None:
                results[name] = search.error or ProbeError(f"the probe did not settle on '{name}'")
                continue
            try:
                results[name] = build_result(self.session, search.outcome, None, "structural")
            except (RFError, ValueError) as e:
                results[name] = e
        for name, source in shared.items():
            if name in plans:
                found = results.get(source)
                if isinstance(found, rfnumeric.ProbeResult):
                    found = dataclasses.replace(found, node=name)
                results[name] = found if found is not None else ProbeError(f"'{source}' was not measured")
        return results

    def units(
        self, sizes: Sequence[int], wanted: dict[str, list[tuple[int, ...]]], local: dict[str, bool]
    ) -> Iterator[tuple[str, UnitsAt | Exception]]:
        """The exact support of every wanted unit at input ``sizes``, node by node (yielded a
        few nodes at a time, so the supports of a large input need not all be held at once).
        ``local``: per node, whether its global side paths are detached."""
        sizes = tuple(int(s) for s in sizes)
        shared = self.shared(list(wanted))
        own: dict[str, list[tuple[int, ...]]] = {}
        for name, units in wanted.items():
            source = shared.get(name, name)
            own[source] = sorted(set(own.get(source, [])) | set(units))
        copies = {name: shared.get(name, name) for name in wanted}
        for group in _chunks(own, local):
            measured: dict[str, UnitsAt | Exception] = {}
            requests = []
            for name in group:
                try:
                    target = self.target(name)
                except RFError as e:
                    measured[name] = e
                    continue
                requests += [Request(target, UnitSpec("fixed", unit=tuple(u)), keep_support=True) for u in own[name]]
            node_local = local.get(group[0], self.local)
            for part in _by_executor(requests):
                for measurement in _measured_apart(self.session, sizes, part, node_local, measured):
                    for name, found in _units_by_node(measurement).items():
                        measured.setdefault(name, found)
            for name, dup in copies.items():
                if dup in measured:
                    found = measured[dup]
                    if isinstance(found, UnitsAt):
                        found = dataclasses.replace(found, supports={u: found.supports.get(u) for u in wanted[name]})
                    yield name, found
            for name in [n for n, dup in copies.items() if dup in measured]:
                del copies[name]
        for name in copies:  # nothing came back for these (cannot happen unless a map vanished)
            yield name, ProbeError(f"the probe returned no units of '{name}' at input {sizes}")


def _by_executor(requests: list[Request]) -> list[list[Request]]:
    """Requests apart by how their maps are reached (graph nodes of the traced model, or module
    calls and the output of the model as it runs): one forward runs one way. Mixed, the
    forward failed and the session went on one unit per forward for good (a U-Net's compare
    ran 2,395 forwards)."""
    graph = [r for r in requests if r.target.in_graph]
    other = [r for r in requests if not r.target.in_graph]
    return [part for part in (graph, other) if part]


def _chunks(own: dict[str, list[tuple[int, ...]]], local: dict[str, bool]) -> Iterator[list[str]]:
    """Nodes in groups of one mode, each group at most UNITS_PER_MEASUREMENT units (or one node)."""
    for mode in (True, False):
        group: list[str] = []
        count = 0
        for name, units in own.items():
            if local.get(name, True) is not mode:
                continue
            if group and count + len(units) > UNITS_PER_MEASUREMENT:
                yield group
                group, count = [], 0
            group.append(name)
            count += len(units)
        if group:
            yield group


def _units_by_node(measurement) -> dict[str, UnitsAt]:
    found: dict[str, UnitsAt] = {}
    for element in measurement.elements:
        name = element.request.target.name
        at = found.setdefault(name, UnitsAt(measurement.sizes, element.n, {}))
        unit = element.request.spec.unit
        at.supports[tuple(unit)] = element.support if element.unit is not None else None
    return found


def identical_maps(session: Session, targets: dict[str, Target], local: bool) -> dict[str, str]:
    """Nodes whose map is the very tensor an earlier node holds in the probe's forward (a
    structural identity such as ReLU or eval BatchNorm returns its input tensor), each mapped to
    that first node: one tensor has one gradient for every seed, so their fields are equal by
    construction and are measured once. Found in one batch-1 forward at the user's input; a
    model that forward cannot run shares nothing."""
    nodes = session.resolver.graph_nodes()  # module paths are graph nodes too: one forward
    graph = [
        Target(Locator(name, "graph", node=nodes[name]))
        for name, target in targets.items()
        if name in nodes and target.output is None
    ]
    if len(graph) < 2:
        return {}
    try:
        captured, _, _ = session.forward(session.shape[2:], graph, 1, local)
    except (ForwardFailed, Retry, RFError, ValueError):
        return {}
    return same_tensor(captured, [t.name for t in graph])


def _needs_user_size(search: Search, user: tuple[int, ...]) -> bool:
    """The search ran on a larger input than the user's where that input changes the answer:
    the model rejected it, or ops whose windows follow the input size (adaptive pooling, a
    resize to a fixed size) work differently there."""
    if search.outcome is not None:
        return search.outcome.measurement.sizes != user and bool(search.outcome.size_dependent)
    return getattr(search.error, "kind", "") == "forward" and search.sizes != user


def _retry_at_user_size(session, part: list[Search], searches: dict[str, Search], user, max_size: int, local: bool) -> None:
    """Search again from the user's own size, which may hold the field; where it does not, the
    node gets a 'size_dependent' error instead of a field measured at another geometry."""
    user = tuple(user)
    redo = [s for s in part if _needs_user_size(s, user)]
    retries = {s.target.name: Search(s.target, user, user, user_max(user, max_size), want_full=not local, keep_heatmap=False, periodic=s.periodic, periods_known=True) for s in redo}
    if not retries:
        return
    run_searches(session, list(retries.values()), isolate=True)
    for name, retry in retries.items():
        if retry.outcome is not None and retry.outcome.measurement.sizes == user:
            searches[name] = retry
        else:
            kind = "forward" if getattr(searches[name].error, "kind", "") == "forward" else "size_dependent"
            searches[name].outcome = None
            searches[name].error = ProbeError(f"the field of '{name}' does not fit the input size {user} and changes on a larger input", kind=kind)


def user_max(user: tuple[int, ...], max_size: int) -> int:
    """A search limit that keeps the search at the user's size (it may not grow)."""
    return min(max(user), max_size)


def _measured_apart(session, sizes, requests: list[Request], local: bool, errors: dict):
    """One measurement of every request (split to fit the memory budget, at the most a probe
    of this session has cost per input pixel so far: the searches ran first), or, if one map
    cannot be measured, each map's own; a map that fails gets its error in ``errors``."""
    cost = math.ceil(max(ELEMENTS_PER_PIXEL, session.elements_per_pixel) * math.prod(sizes))
    try:
        yield _measure_within(session, sizes, requests, local, cost, MEMORY_BUDGET)
        return
    except RFError:
        pass
    by_node: dict[str, list[Request]] = {}
    for request in requests:
        by_node.setdefault(request.target.name, []).append(request)
    for name, own in by_node.items():
        try:
            yield _measure_within(session, sizes, own, local, cost, MEMORY_BUDGET)
        except RFError as e:
            errors[name] = e


def _support(element) -> UnitSupport:
    spans = element.spans
    if any(s is None for s in spans):
        return UnitSupport(element.unit, (None,) * len(spans), ((),) * len(spans))
    return UnitSupport(element.unit, tuple((s.lo, s.hi) for s in spans), tuple(s.pixels() for s in spans))


def units_at(
    model: nn.Module, input_shape: Sequence[int], node: str | None, units: Sequence[tuple[int, ...]], mode: str
) -> tuple[tuple[int, ...], list[UnitSupport]]:
    """The map's size and what each of ``units`` sees, measured at exactly ``input_shape``."""
    session = Session(model, input_shape, "structural")
    target = session.target(node)  # None: the model output
    requests = [Request(target, UnitSpec("fixed", unit=tuple(u))) for u in units]
    measurement = session.measure(tuple(input_shape[2:]), requests, mode == "local")
    n: tuple[int, ...] = ()
    supports = []
    for element in measurement.elements:
        n = element.n
        if element.unit is not None:
            supports.append(_support(element))
    return n, supports


def global_reach(model: nn.Module, input_shape: Sequence[int], mode: str) -> bool:
    """Whether a global spatial reduction inside ``model`` reaches its output's centre unit."""
    sizes = tuple(input_shape[2:])
    try:
        probe = rfnumeric.probe(model, input_shape, mode=mode, size_hint=sizes, max_size=max(sizes))
    except ProbeError:  # the field does not fit the input: a local op
        return False
    return "global" in probe.flags
