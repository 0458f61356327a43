"""How fast is the gradient probe? A table for a ResNet-50-sized model.

For the last feature map of a ResNet-50 (``layer4``), at the smallest input whose centre unit's
field fits inside it, the script times (medians of repeated runs):

- one structural probe (``rfnumeric.probe``), against one plain forward + backward of the
  unmodified model (float32, parameter gradients included) at the same input: the target is a
  ratio below 0.5. The structural field does not depend on channel counts, and the probe
  computes every convolution on the channel sum (exact: all its weights are equal), so it
  costs far less than the model itself;
- one full sweep (``rfnumeric.sweep``, every feature map), against one probe.

Run: ``python benchmarks/probe_bench.py [--repeats 7] [--model resnet50]``. Timings on a shared
machine vary with its load: the script alternates the runs it compares and prints the load.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import rfnumeric  # noqa: E402


# ---- a ResNet-50 of our own, used when the embedded zoo is not available ---------------------
class Bottleneck(nn.Module):
    def __init__(self, cin: int, width: int, stride: int) -> None:
        super().__init__()
        cout = width * 4
        self.conv1 = nn.Conv2d(cin, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, cout, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(
                nn.Conv2d(cin, cout, 1, stride=stride, bias=False), nn.BatchNorm2d(cout)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        out += identity
        return self.relu(out)


class ResNet50(nn.Module):
    def __init__(self, classes: int = 1000) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        cin = 64
        for index, (width, blocks, stride) in enumerate(
            [(64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2)], 1
        ):
            layers = []
            for b in range(blocks):
                layers.append(Bottleneck(cin, width, stride if b == 0 else 1))
                cin = width * 4
            setattr(self, f"layer{index}", nn.Sequential(*layers))
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(2048, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


def build(name: str) -> tuple[nn.Module, str]:
    """The zoo's model if the zoo has it, else the local ResNet-50."""
    try:
        from crosscheck import zoo

        return zoo.build(name), f"crosscheck.zoo '{name}'"
    except (ImportError, KeyError):
        return ResNet50().eval(), "local ResNet-50"


# ---- timing ----------------------------------------------------------------------------------
def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def paired_times(
    a: Callable[[], object], b: Callable[[], object], repeats: int
) -> tuple[list[float], list[float]]:
    """Times of ``a`` and ``b`` run alternately, after one warm-up run each (first-call costs
    are not what is measured); alternating keeps a busy machine from favouring either."""
    a()
    b()
    times_a, times_b = [], []
    for _ in range(repeats):
        times_a.append(timed(a))
        times_b.append(timed(b))
    return times_a, times_b


def smallest_input(
    model: nn.Module, node: str, channels: int, step: int = 32
) -> tuple[int, rfnumeric.ProbeResult]:
    """The smallest multiple of ``step`` at which the probe needs no larger input."""
    grown = rfnumeric.probe(model, (1, channels, 224, 224), node=node)
    size = max(step, (grown.r[0] // step) * step)
    while True:
        p = rfnumeric.probe(model, (1, channels, size, size), node=node)
        if p.input_shape[2:] == (size, size):
            return size, p
        size += step


def forward_backward(model: nn.Module, x: torch.Tensor) -> Callable[[], None]:
    def step() -> None:
        model.zero_grad(set_to_none=True)
        out = model(x)
        out.sum().backward()

    return step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="resnet50")
    parser.add_argument("--node", default="layer4")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--sweep-repeats", type=int, default=3)
    args = parser.parse_args()

    model, origin = build(args.model)
    size, found = smallest_input(model, args.node, 3)
    shape = (1, 3, size, size)

    x = torch.randn(shape)
    probes, plains = paired_times(
        lambda: rfnumeric.probe(model, shape, node=args.node),
        forward_backward(model, x),
        args.repeats,
    )
    probe_s, plain_s = statistics.median(probes), statistics.median(plains)
    ratios = sorted(p / q for p, q in zip(probes, plains))
    sweeps, probes_again = paired_times(
        lambda: rfnumeric.sweep(model, shape),
        lambda: rfnumeric.probe(model, shape, node=args.node),
        args.sweep_repeats,
    )
    sweep_s = statistics.median(sweeps)
    table = rfnumeric.sweep(model, shape)

    rows = [
        ("model", f"{origin}, {sum(p.numel() for p in model.parameters()) / 1e6:.1f} M parameters"),
        (
            "probed node",
            f"{args.node}: r = {found.r[0]}, j = {found.j[0]}, start = {found.start[0]}",
        ),
        ("smallest input containing the field", f"{size} x {size}"),
        ("torch threads", str(torch.get_num_threads())),
        ("probe (median)", f"{probe_s:.3f} s"),
        ("plain forward + backward (median)", f"{plain_s:.3f} s"),
        (
            "probe / forward+backward",
            f"{probe_s / plain_s:.3f} of the medians; paired runs "
            f"{ratios[0]:.3f} .. {ratios[-1]:.3f}, median {statistics.median(ratios):.3f}   (target < 0.5)",
        ),
        (f"sweep, {len(table)} feature maps (median)", f"{sweep_s:.2f} s"),
        ("sweep / probe", f"{sweep_s / statistics.median(probes_again):.1f}"),
        ("machine load (1 min average)", f"{os.getloadavg()[0]:.2f} on {os.cpu_count()} cores"),
    ]
    width = max(len(k) for k, _ in rows)
    print("rfnumeric probe benchmark")
    print("=" * (width + 40))
    for key, value in rows:
        print(f"{key.ljust(width)}  {value}")


if __name__ == "__main__":
    main()
