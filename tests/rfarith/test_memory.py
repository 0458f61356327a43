"""analyze runs on fake tensors: a 2048x2048 input of a ResNet-sized model allocates no real
feature map. Measured as the growth of the process's peak resident memory, in a fresh
interpreter whose peak is reset before each measurement (Linux /proc), against a control that
does allocate one real feature map of the same model; no timing."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

if not (Path("/proc/self/clear_refs").exists() and Path("/proc/self/status").exists()):
    pytest.skip("needs Linux /proc to reset and read the peak resident set size", allow_module_level=True)

SCRIPT = textwrap.dedent(
    """
    import json, resource, sys
    import torch
    from torch import nn
    import rfarith

    def reset_peak():
        # Linux: writing 5 to clear_refs resets the peak resident set size (VmHWM), so an
        # earlier peak (importing torch) cannot hide a new one
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")

    def peak_bytes():
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
        raise RuntimeError("no VmHWM")

    class Block(nn.Module):
        def __init__(self, cin, cout, stride):
            super().__init__()
            self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
            self.bn1 = nn.BatchNorm2d(cout)
            self.relu = nn.ReLU(inplace=True)
            self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
            self.bn2 = nn.BatchNorm2d(cout)
            self.downsample = None
            if stride != 1 or cin != cout:
                self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

        def forward(self, x):
            identity = x if self.downsample is None else self.downsample(x)
            out = self.relu(self.bn1(self.conv1(x)))
            out = self.bn2(self.conv2(out))
            return self.relu(out + identity)

    class ResNet18(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
            self.bn1 = nn.BatchNorm2d(64)
            self.relu = nn.ReLU(inplace=True)
            self.maxpool = nn.MaxPool2d(3, 2, 1)
            widths = [64, 128, 256, 512]
            layers, cin = [], 64
            for i, w in enumerate(widths):
                stride = 1 if i == 0 else 2
                layers.append(nn.Sequential(Block(cin, w, stride), Block(w, w, 1)))
                cin = w
            self.layer1, self.layer2, self.layer3, self.layer4 = layers
            self.avgpool = nn.AdaptiveAvgPool2d(1)
            self.fc = nn.Linear(512, 1000)

        def forward(self, x):
            x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
            x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
            return self.fc(torch.flatten(self.avgpool(x), 1))

    torch.manual_seed(0)
    model = ResNet18().eval()
    rfarith.analyze(model, (1, 3, 64, 64))  # warm up tracing and fake-tensor machinery
    reset_peak()
    before = peak_bytes()
    rep = rfarith.analyze(model, (1, 3, 2048, 2048))
    after = peak_bytes()
    reset_peak()
    base = peak_bytes()
    stem = torch.empty(1, 64, 1024, 1024)  # one real feature map: the stem conv's output
    stem.fill_(1.0)
    control = peak_bytes() - base + after
    layer4 = rep["layer4.1.relu_1"]
    print(json.dumps({
        "analysis": after - before,
        "control": control - after,
        "layer4": [layer4.n[0], layer4.j[0], layer4.r[0], layer4.start[0]],
        "conv1": rep.table.loc["conv1", "shape"],
    }))
    """
)


def test_2048_input_of_a_resnet18_allocates_no_feature_map():
    """The stem conv's output alone is 1x64x1024x1024 float32 = 256 MiB (the input 48 MiB).
    Hand derivation of layer4's field (ResNet-18's well-known 435):
    conv1 7x7 s2 p3: r 7, j 2; maxpool 3 s2 p1: r 7+2*2 = 11, j 4;
    layer1: four 3x3 convs, +2*4 each: 11+32 = 43;
    layer2: strided 3x3 +2*4 = 51 (j -> 8), three more +2*8: 67, 83, 99;
    layer3: strided +2*8 = 115 (j -> 16), three more +2*16: 147, 179, 211;
    layer4: strided +2*16 = 243 (j -> 32), three more +2*32: 307, 371, 435.
    The 1x1 strided shortcuts read unit 2m, the centre of their 3x3 partner: start 0.5 throughout.
    n: 2048 -> 1024 (conv1) -> 512 (maxpool, layer1) -> 256 -> 128 -> 64 (layer4)."""
    root = Path(__file__).resolve().parents[2]
    done = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=300, cwd=root)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    feature_map = 64 * 1024 * 1024 * 4
    assert result["layer4"] == [64, 32, 435, 0.5]
    assert result["conv1"] == [1, 64, 1024, 1024]
    assert result["control"] > feature_map // 2, "the measurement does not see a real feature map"
    assert result["analysis"] < feature_map // 8, f"analyze grew peak memory by {result['analysis'] / 2**20:.0f} MiB"
