"""What crosscheck asks of the probe, for many feature maps at once.

For every compared node: its field (the probe's search, started at the smallest input that
holds the analytic field: the size hint), and what its first, centre and last units see at
exactly the user's input. One private copy of the model serves every node, and measurements at
the same input size and mode share one forward and one backward (rfnumeric's search machinery,
as its sweep uses it). The one place that talks to rfnumeric's internals.
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from torch import nn

import rfnumeric
from rfarith.errors import ProbeError, RFError
from rfnumeric.capture import Locator
from rfnumeric.measure import ForwardFailed, Request, Session, Target, UnitSpec
from rfnumeric.mode import Retry
from rfnumeric.probe import build_result
from rfnumeric.search import MEMORY_BUDGET, Search, _measure_within, run_searches, start_sizes
from rfnumeric.sweep import same_tensor


@dataclass(frozen=True)
class UnitSupport:
    """What one unit sees of the actual input, per axis: (lo, hi) or None, and the pixels."""

    unit: tuple[int, ...]
    bounds: tuple[tuple[int, int] | None, ...]
    pixels: tuple[tuple[int, ...], ...]


@dataclass
class NodeMeasurement:
    """The probe's answers for one node (an exception where it could not answer)."""

    field: rfnumeric.ProbeResult | Exception | None = None
    n: tuple[int, ...] = ()
    units: tuple[UnitSupport, ...] = ()
    units_error: Exception | None = None


def measure_nodes(
    model: nn.Module,
    input_shape: Sequence[int],
    plans: dict[str, tuple[Sequence[int], list[tuple[int, ...]]]],
    mode: str,
    max_size: int,
    progress: Callable[[int, int, str], None] | None = None,
    chunk: int = 32,
    periodic: dict[str, frozenset[int]] | None = None,
) -> dict[str, NodeMeasurement]:
    """``plans``: node -> (size hint per axis, units to measure at ``input_shape``).
    ``periodic``: node -> axes along which the field is known to be periodic (after upsampling):
    the probe measures a window of units there instead of trusting three adjacent ones.

    Searches run ``chunk`` nodes at a time (sharing measurements within a chunk), and
    ``progress(done, total, node)`` is called after each chunk.
    """
    session = Session(model, input_shape, "structural")
    user = session.shape[2:]
    local = mode == "local"
    results = {name: NodeMeasurement() for name in plans}
    searches: dict[str, Search] = {}
    targets = {}
    for name in plans:
        try:
            targets[name] = session.target(name)
        except RFError as e:  # a node the probe cannot address (a function call without fx)
            results[name].field = e
    shared = identical_maps(session, targets, local)  # measured once, under the first name
    for name, (hint, _) in plans.items():
        if name not in targets or name in shared:
            continue
        windows = (periodic or {}).get(name, frozenset())
        searches[name] = Search(targets[name], user, start_sizes(user, hint, max_size), max_size, want_full=not local, keep_heatmap=False, periodic=windows)
    pending = list(searches.values())
    with warnings.catch_warnings():  # crosscheck states size-dependent growth as a reason itself
        warnings.simplefilter("ignore", rfnumeric.GrownInputWarning)
        for start in range(0, len(pending), chunk):
            part = pending[start : start + chunk]
            run_searches(session, part, isolate=True)
            _retry_at_user_size(session, part, searches, user, max_size, local)
            if progress is not None:
                progress(start + len(part), len(pending), part[-1].target.name)
    for name, search in searches.items():
        if search.outcome is None:
            results[name].field = search.error or ProbeError(f"the probe did not settle on '{name}'")
            continue
        try:
            results[name].field = build_result(session, search.outcome, None, "structural")
        except (RFError, ValueError) as e:
            results[name].field = e
    _measure_units(session, user, {k: v for k, v in plans.items() if k not in shared}, targets, results, local)
    for name, source in shared.items():
        measured = results[source]
        field = measured.field
        if isinstance(field, rfnumeric.ProbeResult):
            field = dataclasses.replace(field, node=name)
        results[name] = dataclasses.replace(measured, field=field)
    return results


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
    retries = {s.target.name: Search(s.target, user, user, user_max(user, max_size), want_full=not local, keep_heatmap=False, periodic=s.periodic) for s in redo}
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


def _measure_units(session, user, plans, targets, results, local: bool) -> None:
    """What the planned units see at the user's input, in one measurement per mode."""
    by_mode: dict[bool, list[Request]] = {True: [], False: []}
    for name, (_, units) in plans.items():
        if name not in targets:
            continue
        field = results[name].field
        node_local = field.mode == "local" if isinstance(field, rfnumeric.ProbeResult) else local
        by_mode[node_local] += [Request(targets[name], UnitSpec("fixed", unit=tuple(u))) for u in units]
    for node_local, requests in by_mode.items():
        if not requests:
            continue
        for measurement in _measured_apart(session, tuple(user), requests, node_local, results):
            _record_units(measurement, results)


def _measured_apart(session, sizes, requests: list[Request], local: bool, results):
    """One measurement of every request, or, if one map cannot be measured, each map's own."""
    try:
        yield _measure_within(session, sizes, requests, local, 0, MEMORY_BUDGET)
        return
    except RFError:
        pass
    by_node: dict[str, list[Request]] = {}
    for request in requests:
        by_node.setdefault(request.target.name, []).append(request)
    for name, own in by_node.items():
        try:
            yield _measure_within(session, sizes, own, local, 0, MEMORY_BUDGET)
        except RFError as e:
            results[name].units_error = e


def _record_units(measurement, results) -> None:
    for element in measurement.elements:
        result = results[element.request.target.name]
        result.n = element.n
        if element.unit is not None:
            result.units += (_support(element),)


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
