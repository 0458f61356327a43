"""Benchmarks of rfcheck against their physical floors, as one table of ratios.

0. The user's path (``benchmarks/user_path.py``): ``rfnumeric.probe`` of the deepest map without
   and with a size hint, ``crosscheck.compare`` of the whole model, and peak memory, each over
   one plain forward+backward of the model, on eight zoo architectures.

    make bench                        # or: .venv/bin/python benchmarks/run.py [--quick] [--write docs/performance.md]

1. ``rfarith.analyze`` over a bare ``torch.fx.symbolic_trace`` of the same model (the floor:
   the graph must be traced once), per zoo model, and a depth series showing how analyze time
   grows with the number of nodes.
2. ``rfnumeric.probe`` (structural, the smallest input holding the field) over one plain
   forward+backward of the unmodified model at that input (target <= 0.1).
3. ``rfnumeric.sweep`` of every spatial node over one probe of the last node (target <= 5).
4. ``crosscheck.compare`` of a whole ResNet-50: wall time and peak memory.
5. Peak memory of ``rfarith.analyze`` at a 4096x4096 input (it must not grow with the input).

Times are medians of repeated runs after a warm-up; peak memory is the growth of the process's
peak resident set, reset before each measurement (Linux), measured in a fresh subprocess.
Nothing here is a test: it prints what it measured.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import platform
import statistics
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.fx as fx
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import user_path  # noqa: E402 - benchmarks/ is on sys.path when run as a script
from user_path import COMMON  # noqa: E402

import rfarith  # noqa: E402
import rfnumeric  # noqa: E402
from crosscheck import zoo  # noqa: E402


def median_times(fns: list[Callable[[], object]], repeats: int) -> list[float]:
    """Median times of ``fns`` run in turn, one of each per round (after a warm-up round), so
    that a slow spell of the machine hits all of them alike and their ratio stays fair."""
    for fn in fns:
        fn()
    times: list[list[float]] = [[] for _ in fns]
    for _ in range(repeats):
        for fn, kept in zip(fns, times):
            start = time.perf_counter()
            fn()
            kept.append(time.perf_counter() - start)
    return [statistics.median(kept) for kept in times]


def median_time(fn: Callable[[], object], repeats: int) -> float:
    return median_times([fn], repeats)[0]


# ---- 1. analyze over trace --------------------------------------------------------------------
def analyze_over_trace(names: list[str], repeats: int) -> list[dict]:
    rows = []
    for name in names:
        model, shape = zoo.build(name), zoo.input_shape(name)
        nodes = len(fx.symbolic_trace(model).graph.nodes)
        t_trace = median_time(lambda: fx.symbolic_trace(model), repeats)
        t_analyze = median_time(lambda: rfarith.analyze(model, shape), repeats)
        rows.append({"model": name, "nodes": nodes, "trace_ms": 1e3 * t_trace, "analyze_ms": 1e3 * t_analyze, "ratio": t_analyze / t_trace})
    return rows


class _Deep(nn.Module):
    """A plain residual stack of ``blocks`` blocks (two 3x3 convs each), for the depth series."""

    def __init__(self, blocks: int) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.blocks = nn.ModuleList(nn.Sequential(nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1)) for _ in range(blocks))

    def forward(self, x):
        x = self.stem(x)
        for block in self.blocks:
            x = x + block(x)
        return x


def depth_series(depths: list[int], repeats: int) -> list[dict]:
    rows = []
    for blocks in depths:
        model = _Deep(blocks).eval()
        nodes = len(fx.symbolic_trace(model).graph.nodes)
        t = median_time(lambda: rfarith.analyze(model, (1, 3, 64, 64)), repeats)
        rows.append({"blocks": blocks, "nodes": nodes, "analyze_ms": 1e3 * t, "us_per_node": 1e6 * t / nodes})
    return rows


# ---- 2. probe over forward+backward -------------------------------------------------------------
def last_spatial_node(report: rfarith.Report) -> str:
    return [r.name for r in report.rows if max(r.field.n) > 1 and not r.field.flags & {"global"} and r.op != "output"][-1]


def probed_last_node(name: str) -> tuple[nn.Module, tuple[int, ...], rfarith.Report, str, Callable[[], object]]:
    """A zoo model, its input, its report, its last spatial node and the probe of that node
    (structural, from the analytic size: the smallest input that holds the field)."""
    model, shape = zoo.build(name), zoo.input_shape(name)
    report = rfarith.analyze(model, shape)
    node = last_spatial_node(report)
    hint = report[node].r
    return model, shape, report, node, lambda: rfnumeric.probe(model, shape, node=node, size_hint=hint)


def probe_over_pass(names: list[str], repeats: int) -> list[dict]:
    rows = []
    for name in names:
        model, shape, _, node, probe = probed_last_node(name)
        result = probe()
        probe_shape = result.input_shape
        plain_shape = (1, *probe_shape[1:])

        def forward_backward() -> None:
            x = torch.rand(plain_shape, requires_grad=True)
            out = model(x)
            if isinstance(out, dict):
                out = next(iter(out.values()))
            out.float().sum().backward()

        t_probe, t_pass = median_times([probe, forward_backward], repeats)
        model.zero_grad(set_to_none=True)
        rows.append({"model": name, "node": node, "probe_input": "x".join(map(str, probe_shape[2:])), "probe_s": t_probe, "fwd_bwd_s": t_pass, "ratio": t_probe / t_pass})
    return rows


# ---- 3. sweep over probe ------------------------------------------------------------------------
def maps_measured(model: nn.Module, shape: tuple[int, ...]) -> int:
    """The maps the sweep measures: its rows less those sharing another node's tensor."""
    from rfnumeric.measure import Session

    survey = importlib.import_module("rfnumeric.sweep")._survey
    return sum(1 for row in survey(Session(model, shape), None, True) if not row.same_as and not row.problem)


def sweep_over_probe(names: list[str], repeats: int) -> list[dict]:
    rows = []
    for name in names:
        model, shape, report, _, probe = probed_last_node(name)
        t_probe = median_time(probe, repeats)
        t_sweep = median_time(lambda: rfnumeric.sweep(model, shape), max(1, repeats // 2))
        nodes = len(report.rows)
        rows.append({"model": name, "nodes": nodes, "maps_measured": maps_measured(model, shape), "probe_s": t_probe, "sweep_s": t_sweep, "ratio": t_sweep / t_probe})
    return rows


# ---- 4 and 5: in a fresh interpreter, with the peak reset -----------------------------------------
PEAK = COMMON + textwrap.dedent(
    """
    import crosscheck, rfarith
    {warm}
    reset(); before = peak(); start = time.perf_counter()
    {body}
    seconds = time.perf_counter() - start; after = peak()
    print(json.dumps({{"seconds": seconds, "peak_growth": after - before, "baseline": before}}))
    """
)  # after the preamble of the user-path benchmark: its peak-memory helpers, the zoo model


def in_fresh_process(name: str, warm: str, body: str) -> dict:
    script = PEAK.format(root=str(ROOT), name=name, warm=warm, body=body)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=3600)
    if done.returncode:
        return {"error": done.stderr.strip().splitlines()[-1] if done.stderr.strip() else "failed"}
    return json.loads(done.stdout.strip().splitlines()[-1])


def compare_resnet50() -> dict:
    return in_fresh_process("resnet50", "", "frame = crosscheck.compare(model, zoo.input_shape('resnet50'))")


def analyze_memory(sizes: list[int]) -> list[dict]:
    rows = []
    for size in sizes:
        result = in_fresh_process(
            "resnet50",
            "rfarith.analyze(model, (1, 3, 64, 64))",
            f"rfarith.analyze(model, (1, 3, {size}, {size}))",
        )
        result["input"] = f"{size}x{size}"
        rows.append(result)
    return rows


# ---- output -------------------------------------------------------------------------------------
def table(rows: list[dict], title: str, about: str = "") -> str:
    head = f"### {title}\n\n" + (about.strip() + "\n\n" if about else "")
    if not rows:
        return head + "(no rows)\n"
    columns = list(rows[0])
    lines = [head.rstrip("\n"), "", "| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        lines.append("| " + " | ".join(_cell(row.get(c)) for c in columns) + " |")
    return "\n".join(lines) + "\n"


def _cell(value) -> str:
    if isinstance(value, float):
        return f"{value:.3g}"
    return str(value)


def cpu_model() -> str:
    """The CPU's model name (Linux), else what platform knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine() -> str:
    return (
        f"{cpu_model()}, {os.cpu_count()} cores, {torch.get_num_threads()} torch threads, "
        f"torch {torch.__version__}, Python {platform.python_version()}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats and models")
    parser.add_argument("--write", metavar="FILE", help="also write the tables (markdown) to FILE")
    args = parser.parse_args()
    repeats = 3 if args.quick else 5
    analyze_models = ["alexnet", "vgg16", "resnet18", "resnet50", "resnet152", "inception_v3", "densenet121"]
    probe_models = ["resnet50"] if args.quick else ["resnet50", "inception_v3"]
    path_models = ["resnet50", "shufflenet_v2"] if args.quick else user_path.MODELS
    path_rows = [
        user_path.measure(name, repeats, with_compare=not args.quick, cap=user_path.PLAIN_CAP, timeout=3600, with_heatmap=not args.quick)
        for name in path_models
    ]
    sections = [
        f"Machine: {machine()}\n",
        table(path_rows, f"0. The user's path over one plain pass ({user_path.TARGETS})", SECTION_0),
        table(analyze_over_trace(analyze_models, repeats), "1. rfarith.analyze / torch.fx.symbolic_trace"),
        table(depth_series([8, 16, 32, 64, 128], repeats), "1b. analyze time against graph size (linear: constant us per node)"),
        table(probe_over_pass(probe_models, 3 * repeats), "2. rfnumeric.probe / one forward+backward of the model at the probe's input (target <= 0.1)"),
        table(sweep_over_probe(probe_models, max(1, repeats // 2)), "3. rfnumeric.sweep of every node / one probe (target <= 5)"),
        table([compare_resnet50()], "4. crosscheck.compare of the whole ResNet-50 (seconds, peak memory growth in bytes)"),
        table(analyze_memory([224, 1024, 4096]), "5. peak memory growth of rfarith.analyze (ResNet-50) by input size"),
    ]
    text = "\n".join(sections)
    print(text)
    if args.write:
        write_page(Path(args.write), text)


def write_page(page: Path, text: str) -> None:
    """``page`` rewritten with the tables ``text`` and the notes, keeping its discussion block
    (after section 0's table, where a person reads the run)."""
    kept = discussion(page.read_text()) if page.exists() else ""
    if kept:
        text = text.replace("\n### 1. ", "\n" + kept + "\n\n### 1. ", 1)
    page.write_text("# Performance\n\nGenerated by `make bench` (benchmarks/run.py).\n\n" + text + NOTES)


DISCUSSION = ("<!-- discussion: kept by make bench -->", "<!-- end of discussion -->")


def discussion(page: str) -> str:
    """The block of ``page`` between the DISCUSSION markers, markers included ("" if none):
    what a person wrote about a run (targets met, figures, reasons), which a new run keeps for
    that person to update."""
    start, end = (page.find(marker) for marker in DISCUSSION)
    if start < 0 or end < start:
        return ""
    return page[start : end + len(DISCUSSION[1])]


SECTION_0 = """
`benchmarks/user_path.py` (section 0 of `make bench`): (a) `rfnumeric.probe(model, shape,
node=deepest)` as a user calls it, no size hint; (b) the same with the hint crosscheck passes;
(c) `crosscheck.compare(model, shape)` of the whole model over one plain pass at the largest
input any node of the compare needed (`compare_at`); (d) the probe's peak memory; each over one
plain fp32 forward+backward of the unmodified model at the input the probe ended at (a plain
pass that would pass 6 GB is measured at the largest input that fits and scaled by the area:
`plain_at` says where). Probe and plain pass alternate, one of each per round, medians of 5;
`first_call_s` is the first probe of the process. `heatmap_s` and `heatmap_peak_mb`: the time and
peak memory of `plot.probe_heatmap` (what `rfcheck plot MODEL --kind heatmap` draws: the
structural probe, the effective field, the figure).
"""

NOTES = """
### How the probe gets there, and what each shortcut is checked against

Each shortcut is exact (the same support, bit for bit, as the plain way) and has a test
measuring both ways:

- **Channel collapse**: one channel carries every equal channel (weights `1/fan_in`); ops that
  could treat channels differently fall back to full channels
  (`tests/rfnumeric/test_surrogates.py::test_collapsed_channels_give_the_reference_gradient`).
- **One batched backward**: every probed unit (centre, neighbours, the whole map) is a batch
  element of one forward and one backward (`tests/rfnumeric/test_verification.py`, and the
  property suite unit by unit).
- **Truncation**: the forward stops at the probed node.
- **Start at the field's size** (`size_hint`), growing only if the support touches the border;
  without a hint, at rfarith's field where the model traces and the field does not fit the
  user's input (the border test still decides).
- **Channel classes** (`rfnumeric/classes.py`): a blend made by a channel concatenation records
  which channels carry which part's support, so splits, channel shuffles, slices, permutes and
  grouped or depthwise convolutions keep the probe collapsed
  (`tests/rfnumeric/test_channel_classes.py`: every case against the probe with every channel,
  value for value; ShuffleNet-v2's probe went from 485 s to 1.8 s).
- **Measurement chunks sized from the measured cost per pixel**: DenseNet's probe ran six
  one-unit forwards per input size (an estimate of 8 elements per pixel against 2.5 measured).
- **A module-tree copy** instead of `copy.deepcopy` where every module copies like `nn.Module`
  (`tests/rfnumeric/test_copying.py`).
- **A one-unit window is a strided pick**: the box filter of a 1x1 convolution (any stride or
  padding) takes every s-th unit instead of running an average-pooling pass, which costs as
  much per output as a 3x3 window on this CPU (420 us against 14 us for a multiply on
  6x136x136); the channel count joins the conv surrogate's one scaling pass
  (`tests/rfnumeric/test_surrogates.py::test_box_filter_is_the_convolution_with_equal_weights`,
  and the `1x1 convolutions` case of the collapse test).
- **The input is one stored element** seen everywhere (stride 0): nothing to fill, and the
  first ops read it from cache; its gradient comes back dense all the same
  (`tests/rfnumeric/test_measure.py::test_the_stride_0_input_gives_the_gradient_of_a_dense_one`,
  structural and real weights, against a dense input of ones).
- **A one-channel input gradient is read as it is**: no magnitude and channel-sum pass over
  the whole input, only the kept heatmap takes its magnitude
  (`tests/rfnumeric/test_measure.py`, both readings).
- **Finiteness from one sum**: a finite sum says every element is finite; only a non-finite
  sum (overflow can give one too) checks element-wise
  (`tests/rfnumeric/test_mode.py::test_all_finite_reads_elements_not_their_sum`).
- **Maps held by one tensor measured once** (ReLU, eval BatchNorm, dropout return their input
  in the structural forward) in `rfnumeric.sweep` and `crosscheck.compare`
  (`tests/rfnumeric/test_sweep.py::test_maps_shared_by_identities_are_measured_once_with_the_same_answer`,
  `tests/crosscheck/test_compare.py::test_nodes_sharing_one_tensor_are_measured_once_with_the_same_answer`).

Tried and dropped, with the reason:

- **Checking NaN and Inf only where the probe reads** (the input gradient, which is checked
  anyway), every op's output checked only in a second run where that is not finite: the
  per-op sums are a fifth of MobileNet-v2's hinted probe in a profile, but paired runs gave
  0.92 to 0.95 of the time (resnet50, shufflenet_v2, inception_v3), and a structural forward
  that overflows (the attention stack of `tests/rfnumeric/test_attention.py` without its
  rescaling) then ran to an answer without an error. It matched the rescaled answer there, but
  a forward Inf whose gradient stays finite cannot be shown harmless in general: reverted.

- **A separable box filter** (two 1-D average pools instead of one 2-D one, 3 + 3 taps
  against 9): slower on this CPU, 57 ms against 51 for a 3x3 window on 64x1x224x224 in
  float64 (forward and backward), 137 against 75 on 8x1x800x800; 7x7 on 64x1x56x56 4.1
  against 3.9.
- **More units per measurement in compare** (256 instead of 64 seeds per forward): no
  change (shufflenet_v2 16.0 s against 15.4, wavenet 18.0 against 18.1, mobilenet_v2 5.05
  against 5.25): the cost is per batch element, not per forward.
- **One batch-1 forward shared by every probed unit, seeds vectorised in the backward**
  (`torch.autograd.grad(..., is_grads_batched=True)`, or one backward per seed): exact, but on
  ResNet-50 at 544x544 the probe took 74 ms against 69 ms batched (forward 14 ms instead of
  25, backward 38 instead of 22): the probe's own forward is dominated by per-op Python work,
  not arithmetic.
- **A thin input per axis** (full height, a few columns, to measure the h extent): not exact
  in general. The h extent of a unit is the union of the h extents of the paths whose columns
  the thin input keeps; a branch shifted sideways (a misaligned or cropped branch, which the
  property tests generate) is lost. Exact only for fields that are products of per-axis sets,
  which the probe cannot know without measuring the full field.
- **A convolution with an all-equal kernel instead of average pooling** for windows wider than
  one unit: the probe of ResNet-50 took 2.2 times as long (float64 convolutions have no fast
  path on this CPU; the 7x7 stem alone dominates).
- **Separable or sliced box filters** for the 7x7, stride-2 stem on 6x544x544 (forward and
  backward): one 7x7 pooling 12.4 ms, a 1x7 then 7x1 pooling 15.9 ms, sums of strided slices
  34 ms. Average pooling costs per output more than per tap here, so splitting the window does
  not pay; the stem stays one pooling.
- **float32**: no faster here (a 3x3 box filter on 6x544x544 takes 6.4 ms in float64, 6.4 to
  7.1 ms in float32), and it underflows after fewer layers.

Where the probe's time goes on ResNet-50 at 544x544 (medians of 25 runs, timed apart from this
table, two runs): the copy of the model 5.3 ms, the `torch.fx` trace that resolves a node name
8.7 to 8.8 ms (the trace floor of table 1 itself), the forward 21 to 22 ms for about 225 ops,
the backward 11 ms (of which the gradient hooks that rescale against underflow take 5 to 7 %
of the probe: a probe without them ran at 0.93 of the time), the rest (seeds, fitting) about 5
ms; 51 to 53 ms in all. Before the shortcuts of this page's second part (one-unit windows,
the stride-0 input, the one-channel reading, the one-sum finiteness check) the same probe took
65 to 75 ms: in paired runs (old and new code alternating in one process) the new probe took
0.67 and 0.77 of the old one's time on ResNet-50 (two series: 25 to 30 pairs each) and 0.76
on the Inception-style net (6 pairs). The 7x7 stem alone (one average pooling forward and backward
on 6x544x544) takes about 12 ms of what is left.

Why `sweep / probe <= 5` is out of reach for an exact sweep: every map's field needs seeds of
its own, and seeds of different maps cannot share a batch element (their supports overlap in the
input and gradients add). A map needs at least its centre unit and one neighbour per axis to
show `j` (3 seeds in 2-D; the probe uses 6: two neighbours per axis, to tell period 1 from a
pattern, and the whole map, to tell a border cut from a field's end). On ResNet-50 the sweep
measures 74 maps (`maps_measured`; the other 102 nodes hold the same tensor as one of them),
in three input sizes: 450 seeds at 224x224, 120 at 352x352 and 42 at 544x544, against the
probe's 6 at 544x544. In seeds times input pixels that is 28 times the probe, and the sweep's
measured ratio (13.5 in the run above; 18 to 21 before this page's one-unit-window and
stride-0-input shortcuts) is below it because the forward is shared. With the 3-seed minimum it
would still be 14 probes: an exact per-map sweep cannot reach 5. Reaching it would mean not
measuring every map (composing fields analytically), which is rfarith's job, not the probe's.
"""


if __name__ == "__main__":
    main()
