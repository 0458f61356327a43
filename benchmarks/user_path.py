"""The user's path, timed against one plain pass of the model: the table of issue "the numeric side
at the speed of its floor".

For each model, in fresh interpreters (so that each peak of memory is its own):

(a) ``rfnumeric.probe(model, shape, node=deepest)`` as a user calls it, without a size hint;
(b) the same with the analytic hint crosscheck passes (``size_hint``);
(c) ``crosscheck.compare(model, shape)`` of the whole model;
(d) the peak memory of (a) and of ``plot --kind heatmap`` (the probe, the effective field and
    the figure, as ``rfcheck plot MODEL --kind heatmap`` draws them),

each over one plain fp32 forward+backward of the unmodified model (eval mode, parameter
gradients) at the input the probe ended at ((a), (b), (d)) or at the largest input any node of
compare needed ((c)). The deepest map is the last node, in graph order, whose analytic field is
local (no ``global`` flag) with more than one unit per axis.

A plain pass that would not fit in memory (its peak at the user's input scaled by the area
passes ``--plain-cap`` bytes) is measured at the largest input that fits and scaled to the
probe's input by the ratio of areas (convolutional nets cost in proportion to their input's
area); the table says where it was measured. Times are medians; the probe and the plain pass
run in turn, one of each per round, so that a slow spell of the machine hits both alike.

    python benchmarks/user_path.py [--models resnet50,unet] [--repeats 3] [--no-compare]
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

MODELS = ["resnet50", "densenet121", "inception_v3", "mobilenet_v2", "unet", "fpn", "shufflenet_v2", "wavenet"]
PLAIN_CAP = 6 * 2**30  # bytes a plain pass may take before it is measured smaller and scaled

COMMON = textwrap.dedent(
    """
    import json, math, statistics, sys, time, warnings
    sys.path.insert(0, {root!r})
    warnings.simplefilter("ignore")
    import torch
    def reset():
        open("/proc/self/clear_refs", "w").write("5")
    def peak():
        for line in open("/proc/self/status"):
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    def timed(fn):
        start = time.perf_counter(); fn(); return time.perf_counter() - start
    def medians(fns, repeats):
        kept = [[] for _ in fns]
        for _ in range(repeats):
            for fn, times in zip(fns, kept):
                times.append(timed(fn))
        return [statistics.median(times) for times in kept]
    def leaves(value):
        if isinstance(value, torch.Tensor):
            return [value]
        if isinstance(value, dict):
            value = list(value.values())
        if isinstance(value, (list, tuple)):
            return [t for v in value for t in leaves(v)]
        return []
    from crosscheck import zoo
    model = zoo.build({name!r})
    shape = zoo.input_shape({name!r})
    """
)

PROBE = textwrap.dedent(
    """
    import rfarith, rfnumeric
    from rfarith.tracing import module_outputs
    from rfnumeric.search import field_hint
    report = rfarith.analyze(model, shape)
    node = [rf.node for rf in report if "global" not in rf.flags and all(n > 1 for n in rf.n)][-1]
    rf = report[node]
    hint = field_hint(rf.r, rf.j)
    reset(); before = peak()
    results = []
    first = timed(lambda: results.append(rfnumeric.probe(model, shape, node=node)))
    grown = peak() - before
    plain_grown = results[0].input_shape[2:]
    hinted = rfnumeric.probe(model, shape, node=node, size_hint=hint).input_shape[2:]
    a, b = medians([lambda: rfnumeric.probe(model, shape, node=node),
                    lambda: rfnumeric.probe(model, shape, node=node, size_hint=hint)], {repeats})
    print(json.dumps({{"node": node, "first_s": first, "probe_s": a, "hinted_s": b, "peak": grown,
                      "probe_input": list(plain_grown), "hinted_input": list(hinted),
                      "r": [int(x) for x in rf.r], "j": [float(x) for x in rf.j]}}))
    """
)

PLAIN = textwrap.dedent(
    """
    sizes = {sizes}
    at = {at}
    params = [p for p in model.parameters()]
    def plain(spatial):
        x = torch.randn(1, shape[1], *spatial)
        out = model(x)
        sum(t.float().sum() for t in leaves(out)).backward()
        for p in params:
            p.grad = None
    reset(); before = peak(); plain(at); at_peak = peak() - before  # the first run: its own peak
    ratio = math.prod(sizes) / math.prod(at)
    seconds = medians([lambda: plain(at)], {repeats})[0]
    print(json.dumps({{"plain_s": seconds * ratio, "plain_peak": at_peak * ratio, "measured_at": list(at),
                      "scaled": ratio != 1.0, "at_peak": at_peak}}))
    """
)

COMPARE = textwrap.dedent(
    """
    import crosscheck
    reset(); before = peak()
    start = time.perf_counter()
    frame = crosscheck.compare(model, shape)
    seconds = time.perf_counter() - start
    grown = peak() - before
    largest = max((tuple(s) for sizes in frame["compared_at"] for s in sizes), key=math.prod)
    summary = frame.attrs["summary"]
    print(json.dumps({{"compare_s": seconds, "peak": grown, "largest": list(largest),
                      "summary": {{k: int(v) for k, v in summary.items()}}}}))
    """
)

HEATMAP = textwrap.dedent(
    """
    import matplotlib
    matplotlib.use("Agg")
    from crosscheck import plot
    reset(); before = peak()
    start = time.perf_counter()
    figure = plot.probe_heatmap(model, shape)
    figure.savefig("/dev/null", format="png")
    print(json.dumps({{"heatmap_s": time.perf_counter() - start, "peak": peak() - before}}))
    """
)


def run(name: str, body: str, timeout: float, **values) -> dict:
    """Run ``body`` after the common preamble in a fresh interpreter; its last line is JSON."""
    script = COMMON.format(root=str(ROOT), name=name) + body.format(**values)
    try:
        done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:.0f} s"}
    if done.returncode:
        lines = done.stderr.strip().splitlines()
        return {"error": lines[-1] if lines else f"exit status {done.returncode}"}
    return json.loads(done.stdout.strip().splitlines()[-1])


def plain_pass(name: str, sizes, repeats: int, cap: int, timeout: float) -> dict:
    """One plain pass at ``sizes`` (time and peak memory, each process fresh), or, where its
    peak at the zoo input scaled by the area passes ``cap``, at the largest input that fits,
    scaled to ``sizes`` by the ratio of areas."""
    from crosscheck import zoo  # noqa: PLC0415

    small = tuple(zoo.input_shape(name)[2:])
    at = tuple(sizes)
    if math.prod(at) > math.prod(small):
        first = run(name, PLAIN, timeout, sizes=small, at=small, repeats=1)
        if "error" in first:
            return first
        area = math.prod(at) / math.prod(small)
        if first["at_peak"] * area > cap:
            shrink = (first["at_peak"] * area / cap) ** (1.0 / len(at))
            at = tuple(max(s0, int(s / shrink)) for s, s0 in zip(at, small))
    result = run(name, PLAIN, timeout, sizes=tuple(sizes), at=at, repeats=repeats)
    return result


def measure(name: str, repeats: int, with_compare: bool, cap: int, timeout: float, with_heatmap: bool = True) -> dict:
    """Every figure of one model's row (a missing step: its error in the row)."""
    row: dict = {"model": name}
    probe = run(name, PROBE, timeout, repeats=repeats)
    if "error" in probe:
        return {**row, "error": f"probe: {probe['error']}"}
    plain = plain_pass(name, probe["probe_input"], repeats, cap, timeout)
    if "error" in plain:
        return {**row, "error": f"plain pass: {plain['error']}"}
    hinted_plain = plain if probe["hinted_input"] == probe["probe_input"] else plain_pass(name, probe["hinted_input"], repeats, cap, timeout)
    heat = run(name, HEATMAP, timeout) if with_heatmap else {}
    row.update(
        node=probe["node"],
        probe_input=_size(probe["probe_input"]),
        plain_s=plain["plain_s"],
        plain_at=_size(plain["measured_at"]) + (" (scaled)" if plain["scaled"] else ""),
        probe_s=probe["probe_s"],
        a_probe=probe["probe_s"] / plain["plain_s"],
        hinted_s=probe["hinted_s"],
        b_hinted=probe["hinted_s"] / hinted_plain["plain_s"],
        first_call_s=probe["first_s"],
        d_memory=probe["peak"] / plain["plain_peak"],
        probe_peak_mb=probe["peak"] / 2**20,
        plain_peak_mb=plain["plain_peak"] / 2**20,
    )
    if with_heatmap:
        row.update(heatmap_s=heat.get("heatmap_s", math.nan), heatmap_peak_mb=heat["peak"] / 2**20 if "peak" in heat else heat.get("error"))
    if with_compare:
        compared = run(name, COMPARE, timeout)
        if "error" in compared:
            row.update(compare_s=math.nan, c_compare=compared["error"])
        else:
            at = plain_pass(name, compared["largest"], 1, cap, timeout)
            summary = compared["summary"]
            row.update(
                compare_s=compared["compare_s"],
                compare_at=_size(compared["largest"]),
                c_compare=compared["compare_s"] / at["plain_s"] if "plain_s" in at else at.get("error"),
                compare_peak_mb=compared["peak"] / 2**20,
                verdict=f"{summary.get('agree', 0)}/{summary.get('nodes', 0)} agree",
            )
    return row


def _size(sizes) -> str:
    return "x".join(str(s) for s in sizes)


TARGETS = "targets: a_probe and b_hinted <= 0.1, c_compare <= 5, d_memory <= 2, heatmap_peak_mb <= 2048"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=",".join(MODELS), help="comma-separated zoo names")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-compare", action="store_true", help="leave out (c), the whole-model compare")
    parser.add_argument("--no-heatmap", action="store_true", help="leave out the heat-map plot's peak memory")
    parser.add_argument("--plain-cap", type=int, default=PLAIN_CAP, help="bytes a plain pass may take (else scaled)")
    parser.add_argument("--timeout", type=float, default=3600, help="seconds per step")
    args = parser.parse_args()
    from run import table  # noqa: PLC0415 - the one table format of the benchmarks

    rows = []
    for name in args.models.split(","):
        rows.append(measure(name, args.repeats, not args.no_compare, args.plain_cap, args.timeout, not args.no_heatmap))
        print(json.dumps(rows[-1]), flush=True)
    print(table(rows, f"0. The user's path over one plain pass ({TARGETS})"))


if __name__ == "__main__":
    main()
