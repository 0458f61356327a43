"""Regenerate the images in docs/figures/.

    python docs/make_figures.py            # every figure
    python docs/make_figures.py conventions alexnet_rf_grid   # some of them
    python docs/make_figures.py --list     # their names

Every number drawn comes from rfarith / rfnumeric / crosscheck at the time the script runs:
the two 1-D diagrams are drawn from ``rfarith.analyze`` of tiny 1-D networks, the other
figures are the package's own plotting functions (``crosscheck.plot``). Weights are random
with a fixed seed, so the effective-field figures are reproducible on one machine.
"""

from __future__ import annotations

import argparse
import importlib.util
import math
import sys
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402
from matplotlib.patches import Rectangle  # noqa: E402
from torch import nn  # noqa: E402

import rfarith  # noqa: E402
from crosscheck import plot, zoo  # noqa: E402

DOCS = Path(__file__).resolve().parent
FIGURES = DOCS / "figures"
DPI = 80  # modest files: the README shows two of them


# ---- helpers ------------------------------------------------------------------------------------
def load_example(name: str = "my_model"):
    """The example model of getting-started.md (docs/examples/my_model.py)."""
    path = DOCS / "examples" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.build()


def _bracket(ax, lo: float, hi: float, y: float, colour: str, height: float = 0.12) -> None:
    """A square bracket over [lo, hi] at height y, ticks pointing down."""
    ax.plot([lo, lo, hi, hi], [y - height, y, y, y - height], color=colour, lw=1.8, solid_capstyle="butt")


def _input_row(ax, extent: int, left: int, right: int, y: float = 0.0) -> None:
    """Input pixels as cells; cells outside 0 .. extent-1 are padding (hatched)."""
    for i in range(left, right):
        inside = 0 <= i < extent
        ax.add_patch(
            Rectangle(
                (i, y), 1, 0.8,
                facecolor="#dfe8f3" if inside else "white",
                edgecolor="0.35" if inside else "0.7",
                hatch=None if inside else "///",
                lw=0.8,
            )
        )
        ax.text(i + 0.5, y + 0.4, str(i), ha="center", va="center", fontsize=8, color="0.15" if inside else "0.55")


def _field_text(rf: rfarith.ReceptiveField) -> str:
    fmt = rfarith.report.format_number
    return f"n {rf.n[0]}, j {fmt(rf.j[0])}, r {rf.r[0]}, start {fmt(rf.start[0])}"


# ---- figures ------------------------------------------------------------------------------------
def conventions() -> plt.Figure:
    """n, j, r and start on a 1-D input of 13 pixels and two strided convolutions."""
    net = nn.Sequential(
        nn.Conv1d(1, 1, kernel_size=3, stride=2, padding=1),
        nn.Conv1d(1, 1, kernel_size=3, stride=2),
    )
    extent = 13
    rep = rfarith.analyze(net, (1, 1, extent))
    layers = [("conv1 (k 3, s 2, p 1)", rep["0"]), ("conv2 (k 3, s 2, p 0)", rep["1"])]
    colours = ["#1f77b4", "#d62728"]
    left, right = -2, extent + 2

    fig, ax = plt.subplots(figsize=(10, 5.4), layout="constrained")
    _input_row(ax, extent, left, right)
    ax.text(left - 0.3, 0.4, f"input\n{_field_text(rep['input'])}", ha="right", va="center", fontsize=9)
    ax.text((left - 0 + 0) / 2, -0.35, "padding", ha="center", fontsize=8, color="0.45")
    ax.text(extent + (right - extent) / 2, -0.35, "padding", ha="center", fontsize=8, color="0.45")

    y = 1.4
    for (label, rf), colour in zip(layers, colours):
        r, j = rf.r[0], rf.j[0]
        lanes = max(1, math.ceil(r / j))
        for m in range(rf.n[0]):
            lo, hi = rf.bounds(m)[0]
            centre = rf.start[0] + m * j
            yy = y + 0.32 * (m % lanes)
            _bracket(ax, lo, hi + 1, yy, colour)
            ax.plot([centre], [yy], "o", color=colour, ms=5)
            ax.text(centre, yy + 0.06, f"{m}", ha="center", va="bottom", fontsize=8, color=colour)
        ax.text(left - 0.3, y + 0.16 * (lanes - 1), f"{label}\n{_field_text(rf)}", ha="right", va="center", fontsize=9, color=colour)
        y += 0.32 * lanes + 0.9

    # the annotations, on conv2
    rf = layers[1][1]
    colour = colours[1]
    start, j, r = rf.start[0], rf.j[0], rf.r[0]
    lo0, hi0 = rf.bounds(0)[0]
    top = y - 0.5
    ax.annotate("", xy=(start, top), xytext=(0, top), arrowprops={"arrowstyle": "->", "color": "black", "lw": 1.2})
    ax.text(start / 2, top + 0.08, f"start = {start:g}", ha="center", va="bottom", fontsize=9)
    ax.annotate("", xy=(start + j, top + 0.55), xytext=(start, top + 0.55), arrowprops={"arrowstyle": "<->", "color": "black", "lw": 1.2})
    ax.text(start + j / 2, top + 0.63, f"j = {j:g}", ha="center", va="bottom", fontsize=9)
    ax.annotate("", xy=(hi0 + 1, top + 1.1), xytext=(lo0, top + 1.1), arrowprops={"arrowstyle": "<->", "color": colour, "lw": 1.2})
    ax.text((lo0 + hi0 + 1) / 2, top + 1.18, f"r = {r}: unit 0 sees pixels {lo0} .. {hi0}", ha="center", va="bottom", fontsize=9, color=colour)
    for x in (0, start, start + j):
        ax.plot([x, x], [0.85, top + 0.55 if x else top], ls=":", color="0.5", lw=0.8)

    ax.text(
        (left + right) / 2, -0.75,
        "pixel i spans [i, i+1) and has its centre at i + 0.5;  unit m's field is centred at start + m·j\n"
        "and spans pixels  lo(m) = start + m·j − r/2  ..  hi(m) = start + m·j + r/2 − 1  (unclipped: padding included)",
        ha="center", fontsize=9,
    )
    ax.set_xlim(left - 6.2, right + 0.2)
    ax.set_ylim(-1.35, top + 1.6)
    ax.axis("off")
    ax.set_title("Receptive-field conventions along one axis (brackets: the pixels each unit sees; dots: field centres)", fontsize=10)
    return fig


def periodic() -> plt.Figure:
    """What each unit sees after a stride-2 transposed convolution: a period of 2 units."""
    net = nn.Sequential(
        nn.Conv1d(1, 1, kernel_size=3, stride=2, padding=1),
        nn.ConvTranspose1d(1, 1, kernel_size=3, stride=2, padding=1, output_padding=1),
    )
    extent = 12
    rf = rfarith.analyze(net, (1, 1, extent)).output
    units = range(rf.n[0])
    left, right = -2, extent + 2
    fig, ax = plt.subplots(figsize=(9, 5.2), layout="constrained")
    colours = ["#1f77b4", "#ff7f0e"]
    for m in units:
        seen = set(rf.seen(m)[0])
        real = set(rf.real_seen(m)[0])
        for i in range(left, right):
            if i in real:
                face, edge, hatch = colours[m % 2], "0.3", None
            elif i in seen:
                face, edge, hatch = "white", colours[m % 2], "///"
            else:
                face, edge, hatch = "white", "0.85", None
            ax.add_patch(Rectangle((i, -m - 1), 1, 0.9, facecolor=face, edgecolor=edge, hatch=hatch, lw=0.6))
        lo, hi = rf.bounds(m)[0]
        ax.text(right + 0.3, -m - 0.55, f"{lo} .. {hi}", va="center", fontsize=8)
    for i in range(left, right):
        ax.text(i + 0.5, 0.3, str(i), ha="center", fontsize=8, color="0.15" if 0 <= i < extent else "0.55")
    ax.axvline(0, color="black", lw=1)
    ax.axvline(extent, color="black", lw=1)
    ax.set_yticks([-m - 0.55 for m in units], [f"unit {m} (phase {m % rf.phases[0]})" for m in units], fontsize=8)
    ax.set_xticks([])
    for side in ("top", "right", "bottom", "left"):
        ax.spines[side].set_visible(False)
    ax.set_xlim(left, right + 2.5)
    ax.set_ylim(-len(units) - 0.3, 0.8)
    fmt = rfarith.report.format_number
    ax.set_title(
        "Conv1d(k 3, s 2, p 1) then ConvTranspose1d(k 3, s 2, p 1, output_padding 1) on 12 pixels\n"
        f"period P = {rf.phases[0]}: r {rf.r[0]} (max over phases), j {fmt(rf.j[0])}, start {fmt(rf.start[0])}, "
        f"flags: {rf.describe_flags()}\nfilled: input pixels the unit sees; hatched: padding pixels of its unclipped field",
        fontsize=9,
    )
    return fig


def alexnet_rf_grid() -> plt.Figure:
    """The guide's AlexNet: three units of pool5 on the test card, analytic and probed."""
    return plot.rf_grid(zoo.build("alexnet"), zoo.input_shape("alexnet"))


def resnet18_growth() -> plt.Figure:
    """r and j layer by layer through ResNet-18, analytic lines and numeric markers."""
    return plot.growth(zoo.build("resnet18"), zoo.input_shape("resnet18"))


def my_model_rf() -> plt.Figure:
    """The getting-started example model, as ``rfcheck plot`` draws it."""
    return plot.rf_grid(load_example(), (1, 3, 256, 256))


def my_model_heatmap() -> plt.Figure:
    """The probe's structural and effective heat maps of the example model's centre unit."""
    torch.manual_seed(0)
    return plot.probe_heatmap(load_example(), (1, 3, 96, 96))


def deep_stack_erf() -> plt.Figure:
    """Effective against structural field of a 16-layer plain conv stack (He-initialised)."""
    torch.manual_seed(0)
    layers = []
    for i in range(16):
        conv = nn.Conv2d(8, 8, 3, padding=1)
        nn.init.kaiming_normal_(conv.weight, nonlinearity="relu")
        nn.init.zeros_(conv.bias)
        layers.append(conv)
        if i < 15:
            layers.append(nn.ReLU())
    return plot.erf_profile(nn.Sequential(*layers), (1, 8, 96, 96))


ALL = {
    "conventions": conventions,
    "periodic": periodic,
    "alexnet_rf_grid": alexnet_rf_grid,
    "resnet18_growth": resnet18_growth,
    "my_model_rf": my_model_rf,
    "my_model_heatmap": my_model_heatmap,
    "deep_stack_erf": deep_stack_erf,
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Regenerate docs/figures/*.png")
    parser.add_argument("names", nargs="*", help=f"figures to make (default: all): {', '.join(ALL)}")
    parser.add_argument("--list", action="store_true", help="list the figures and exit")
    parser.add_argument("--out", type=Path, default=FIGURES, help="output folder (default: docs/figures)")
    args = parser.parse_args(argv)
    if args.list:
        for name, make in ALL.items():
            print(f"{name:18s} {make.__doc__}")
        return 0
    unknown = [n for n in args.names if n not in ALL]
    if unknown:
        parser.error(f"unknown figure(s) {', '.join(unknown)}; choose from {', '.join(ALL)}")
    args.out.mkdir(parents=True, exist_ok=True)
    for name in args.names or list(ALL):
        started = time.perf_counter()
        fig = ALL[name]()
        path = args.out / f"{name}.png"
        fig.savefig(path, dpi=DPI, metadata={"Software": None})
        plt.close(fig)
        print(f"wrote {path.relative_to(args.out.parent) if args.out == FIGURES else path} ({time.perf_counter() - started:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
