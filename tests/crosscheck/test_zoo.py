"""The embedded model zoo: every entry builds, runs, is analysed, and reads like torchvision.

Receptive-field facts below are derived by hand in each docstring with the guide's recurrences
(``j' = j*s``, ``r' = r + (k-1)*j``, ``start' = start + ((k-1)/2 - p)*j``; the input has
``j = 1``, ``r = 1``, ``start = 0.5``) and only then compared with rfarith.
"""

from __future__ import annotations

from functools import cache

import pytest
import torch
import torch.fx
from torch import nn

import crosscheck
import rfarith
import rfnumeric
from crosscheck import zoo

CONVS = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)

REQUIRED = (
    "alexnet", "alexnet_torchvision", "vgg16", "resnet18", "resnet50", "inception_v3",
    "densenet121", "mobilenet_v2", "se_resnet", "keras_minimal", "keras_detailed", "unet",
)


@cache
def report(name: str) -> rfarith.Report:
    return rfarith.analyze(zoo.build(name), zoo.input_shape(name))


def square(v):
    return (v, v)


def assert_field(rf: rfarith.ReceptiveField, r: int, j: int, start: float | None = None) -> None:
    assert rf.r == square(r), rf
    assert rf.j == square(j), rf
    if start is not None:
        assert rf.start == square(start), rf


# ---- registry ---------------------------------------------------------------------------------
def test_names_hold_the_required_models():
    assert set(REQUIRED) <= set(zoo.names())
    assert len(zoo.names()) == len(set(zoo.names()))


def test_unknown_name_raises_and_lists_the_names():
    with pytest.raises(zoo.UnknownModel) as info:
        zoo.build("resnet19")
    message = str(info.value)
    assert "resnet19" in message and "Did you mean" in message
    for name in zoo.names():
        assert name in message
    assert isinstance(info.value, rfarith.RFError) and isinstance(info.value, KeyError)


@pytest.mark.parametrize("name", zoo.names())
def test_entry_is_described(name):
    entry = zoo.entry(name)
    assert entry.description
    assert len(entry.input_shape) in (3, 4, 5) and entry.input_shape[0] == 1  # 1-D (audio) to 3-D


# ---- every model: forward on real tensors, then the analytic walk ------------------------------
@pytest.mark.parametrize("name", zoo.names())
def test_builds_runs_and_is_analysed(name):
    model = zoo.build(name)
    assert not model.training
    shape = zoo.input_shape(name)
    with torch.no_grad():
        out = model(torch.randn(shape))
    outputs = out.values() if isinstance(out, dict) else [out]
    for y in outputs:
        assert y.shape[0] == shape[0] and torch.isfinite(y).all()

    torch.fx.symbolic_trace(model)  # plain FX, no rfarith leaves: no data-dependent control flow
    rep = rfarith.analyze(model, shape)
    convs = [path for path, m in model.named_modules() if isinstance(m, CONVS)]
    assert convs
    missing = [path for path in convs if path not in rep]
    assert not missing, f"conv modules without a row: {missing}"


# ---- torchvision's node names -----------------------------------------------------------------
TORCHVISION_NAMES = {
    "alexnet_torchvision": ["features.0", "features.3", "features.12", "avgpool", "flatten", "classifier.1", "classifier.6"],
    "vgg16": ["features.0", "features.28", "features.30", "avgpool", "flatten", "classifier.0", "classifier.6"],
    "resnet18": [
        "conv1", "maxpool", "layer1.0.conv2", "layer1.0.add", "layer1.0.relu_1",
        "layer2.0.downsample.0", "layer2.0.downsample.1", "layer4.1.relu_1", "avgpool", "fc",
    ],
    "resnet50": ["layer1.0.conv3", "layer1.0.downsample.0", "layer2.0.conv2", "layer4.2.relu_2", "fc"],
    "inception_v3": [
        "Conv2d_1a_3x3.conv", "Conv2d_4a_3x3.relu", "maxpool2", "Mixed_5b.branch1x1.conv",
        "Mixed_5b.branch5x5_2.conv", "Mixed_5b.branch3x3dbl_2.conv", "Mixed_5b.branch3x3dbl_3.bn",
        "Mixed_5b.avg_pool2d", "Mixed_5b.branch_pool.conv", "Mixed_5b.cat", "Mixed_6a.max_pool2d",
        "Mixed_6b.branch7x7_2.conv", "Mixed_6e.branch7x7dbl_5.conv", "Mixed_7a.branch7x7x3_4.conv",
        "Mixed_7b.branch3x3_2a.conv", "Mixed_7c.cat_2", "avgpool", "dropout", "fc",
    ],
    "densenet121": [
        "features.conv0", "features.norm0", "features.relu0", "features.pool0",
        "features.denseblock1.denselayer1.norm1", "features.denseblock1.denselayer1.conv2",
        "features.denseblock1.denselayer1.cat", "features.denseblock1.cat",
        "features.transition1.conv", "features.transition1.pool", "features.denseblock4.denselayer16.conv2",
        "features.norm5", "relu", "adaptive_avg_pool2d", "classifier",
    ],
    "mobilenet_v2": ["features.0.0", "features.1.conv.0.0", "features.2.conv.1.0", "features.3.add", "features.18.2", "classifier.1"],
    "efficientnet_b0": [
        "features.0.0", "features.1.0.block.0.0", "features.1.0.block.1.avgpool", "features.1.0.block.1.fc2",
        "features.1.0.block.1.mul", "features.2.0.block.1.0", "features.2.1.add", "features.8.0", "avgpool", "classifier.1",
    ],
    "convnext_tiny": ["features.0.0", "features.0.1.layer_norm", "features.1.0.block.0", "features.1.0.block.2", "features.1.0.add", "features.2.1", "classifier.2"],
    "vit_tiny": ["conv_proj", "reshape", "permute", "cat", "encoder.add", "encoder.layers.encoder_layer_0.ln_1", "getitem_5", "encoder.layers.encoder_layer_1.mlp.3", "encoder.ln", "heads.head"],
    "fpn": ["body.layer4.0.conv2", "fpn.inner_blocks.0.0", "fpn.layer_blocks.3.0", "fpn.interpolate", "fpn.add"],
    "shufflenet_v2": [
        "conv1.0", "maxpool", "stage2.0.branch1.0", "stage2.0.branch2.3", "stage2.0.cat", "stage2.0.view",
        "stage2.0.transpose", "stage2.0.view_1", "stage2.1.getitem_1", "stage2.1.branch2.3", "stage2.1.cat",
        "stage4.3.view_1", "conv5.0", "mean", "fc",
    ],
}


@pytest.mark.parametrize("name", sorted(TORCHVISION_NAMES))
def test_node_names_follow_torchvision(name):
    rep = report(name)
    missing = [n for n in TORCHVISION_NAMES[name] if n not in rep]
    assert not missing


def test_vgg16_features_indices():
    """torchvision's VGG-16: 13 conv/ReLU pairs and 5 pools in one Sequential, features.0..30."""
    features = zoo.build("vgg16").features
    assert len(features) == 31
    assert [i for i, m in enumerate(features) if isinstance(m, nn.MaxPool2d)] == [4, 9, 16, 23, 30]
    assert isinstance(features[28], nn.Conv2d)


# ---- receptive fields, derived by hand --------------------------------------------------------
def test_alexnet_torchvision_pool5():
    """conv 11/4 pad 2: r 11, j 4, start 0.5+(5-2) = 3.5.  pool 3/2: r 11+2*4 = 19, j 8,
    start 3.5+1*4 = 7.5.  conv 5 pad 2: r 19+4*8 = 51, start 7.5.  pool 3/2: r 51+2*8 = 67,
    j 16, start 7.5+8 = 15.5.  three conv 3 pad 1: r 67+3*2*16 = 163.  pool 3/2 (features.12):
    r 163+2*16 = 195, j 32, start 15.5+16 = 31.5."""
    rep = report("alexnet_torchvision")
    assert_field(rep["features.10"], r=163, j=16, start=15.5)
    assert_field(rep["features.12"], r=195, j=32, start=31.5)


def test_vgg16_conv5_3_and_pool5():
    """Each conv 3 pad 1 adds 2*j and keeps start; each pool 2/2 adds j, doubles j and moves
    start by j/2.  block 1 (2 convs, j 1): r 5; pool1: r 6, j 2, start 1.0.  block 2 (2 convs):
    r 6+8 = 14; pool2: r 16, j 4, start 2.0.  block 3 (3 convs): r 16+24 = 40; pool3: r 44, j 8,
    start 4.0.  block 4: r 44+48 = 92; pool4: r 100, j 16, start 8.0.  block 5: conv5_3
    (features.28) r 100+96 = 196, j 16; pool5 (features.30): r 212, j 32, start 16.0.
    (212 is pool5's field, often quoted for conv5_3 by mistake.)"""
    rep = report("vgg16")
    assert_field(rep["features.28"], r=196, j=16, start=8.0)
    assert_field(rep["features.30"], r=212, j=32, start=16.0)


def test_resnet18_layer4():
    """conv1 7/2 pad 3: r 7, j 2, start 0.5.  maxpool 3/2 pad 1: r 11, j 4, start 0.5.
    Every 3x3 pad 1 conv adds 2*j; a block's first conv carries its stride; the shortcut
    (identity or 1x1) is nested inside the conv path and centred alike.
    layer1: 4 convs at j 4: r 11+32 = 43.  layer2: first conv at j 4 (stride 2): r 51, j 8,
    then 3 convs at j 8: r 99.  layer3: 99+16 = 115, j 16, +3*32: r 211.  layer4: 211+32 = 243,
    j 32, +3*64: r 435 (the published ResNet-18 value)."""
    rep = report("resnet18")
    assert_field(rep["maxpool"], r=11, j=4, start=0.5)
    assert_field(rep["layer1.1.relu_1"], r=43, j=4)
    assert_field(rep["layer2.0.downsample.0"], r=43, j=8, start=0.5)
    assert_field(rep["layer3.1.relu_1"], r=211, j=16)
    assert_field(rep["layer4.1.relu_1"], r=435, j=32, start=0.5)
    assert not rep["layer4.1.relu_1"].flags


def test_resnet50_and_resnet152_layer4():
    """Stem as ResNet-18: r 11, j 4.  A bottleneck has one 3x3 conv (stride on it, v1.5).
    ResNet-50 [3, 4, 6, 3]: layer1 11+3*8 = 35; layer2 35+8 = 43 (j 8) +3*16 = 91; layer3
    91+16 = 107 (j 16) +5*32 = 267; layer4 267+32 = 299 (j 32) +2*64 = 427.
    ResNet-152 [3, 8, 36, 3]: layer1 35; layer2 43 +7*16 = 155; layer3 171 +35*32 = 1291;
    layer4 1323 +2*64 = 1451."""
    assert_field(report("resnet50")["layer4.2.relu_2"], r=427, j=32, start=0.5)
    rep = report("resnet152")
    assert_field(rep["layer3.35.relu_2"], r=1291, j=16)
    assert_field(rep["layer4.2.relu_2"], r=1451, j=32, start=0.5)


def test_se_resnet_gate_is_a_global_side_path():
    """The squeeze-excite gate pools globally and multiplies: the local field is ResNet-50's
    (layer1.0: 11+8 = 19; layer4: 427) and the result is flagged global via the first gate."""
    rep = report("se_resnet")
    gated = rep["layer1.0.se.mul"]
    assert_field(gated, r=19, j=4)
    assert "global" in gated.flags and gated.global_via[0] == "layer1.0.se.avgpool"
    out = rep["layer4.2.relu_2"]
    assert_field(out, r=427, j=32)
    assert out.global_via[0] == "layer1.0.se.avgpool"


def test_inception_v3_stem_and_mixed_blocks():
    """Stem: 3/2 pad 0: r 3, j 2, start 1.5; 3 pad 0: r 7, start 3.5; 3 pad 1: r 11; maxpool
    3/2: r 15, j 4, start 5.5; 1x1; 3 pad 0: r 23, start 9.5; maxpool 3/2: r 31, j 8, start 13.5.
    InceptionA: the longest branches (5x5, or 3x3 twice) add 4*j = 32: 5b 63, 5c 95, 5d 127.
    Mixed_6a: 3x3 pad 1 then 3x3/2: 127+16+16 = 159, j 16, start 13.5+8 = 21.5.
    InceptionC: the double branch has two 7-taps per axis: +2*6*16 = 192; 4 blocks: 927.
    Mixed_7a: 1x7, 7x1 (+96 per axis) then 3x3/2 (+32): 1055, j 32.
    InceptionE: 3x3 (+64), then 1x3 and 3x1 side by side (+64 on each axis): +128;
    Mixed_7b 1183, Mixed_7c 1311 (the published Inception-v3 value)."""
    rep = report("inception_v3")
    assert_field(rep["maxpool2"], r=31, j=8, start=13.5)
    assert_field(rep["Mixed_5b.cat"], r=63, j=8, start=13.5)
    assert_field(rep["Mixed_5d.cat"], r=127, j=8)
    assert_field(rep["Mixed_6a.cat"], r=159, j=16, start=21.5)
    assert_field(rep["Mixed_6e.cat"], r=927, j=16)
    assert_field(rep["Mixed_7a.cat"], r=1055, j=32)
    assert_field(rep["Mixed_7b.cat_2"], r=1183, j=32)
    assert_field(rep["Mixed_7c.cat_2"], r=1311, j=32)
    # a factorised branch grows one axis only
    assert rep["Mixed_6b.branch7x7_2.conv"].r == (159, 159 + 96)


def test_densenet121_norm5():
    """conv0 7/2: r 7, j 2; pool0 3/2 pad 1: r 11, j 4, start 0.5.  A dense block's field is its
    last layer's (each has one 3x3 conv; earlier maps are nested): block1 11+6*8 = 59;
    transition avg pool 2/2: +j, start +j/2: 63, j 8, start 2.5.  block2 63+12*16 = 255;
    transition: 263, j 16, start 6.5.  block3 263+24*32 = 1031; transition: 1047, j 32,
    start 14.5.  block4: 1047+16*64 = 2071."""
    rep = report("densenet121")
    assert_field(rep["features.denseblock1.cat"], r=59, j=4, start=0.5)
    assert_field(rep["features.transition1.pool"], r=63, j=8, start=2.5)
    assert_field(rep["features.norm5"], r=2071, j=32, start=14.5)


def test_mobilenet_v2_last_conv():
    """3x3/2 pad 1 stem: r 3, j 2.  One depthwise 3x3 per block, stride on it:
    block 1 (j 2): 7; blocks 2-3 (first /2): 11 (j 4), 19; 4-6: 27 (j 8), 43, 59;
    7-10: 75 (j 16), 107, 139, 171; 11-13: 203, 235, 267; 14-16: 299 (j 32), 363, 427;
    17: 491; 1x1 conv features.18: 491, j 32, start 0.5."""
    rep = report("mobilenet_v2")
    assert_field(rep["features.7.conv.1.0"], r=75, j=16)
    assert_field(rep["features.18.2"], r=491, j=32, start=0.5)


def test_efficientnet_b0_last_conv():
    """3x3/2 stem: r 3, j 2.  One depthwise kxk per MBConv: stage 1 (k3, j 2): 7;
    stage 2 (k3, /2): 11 (j 4), 19; stage 3 (k5, /2): 35 (j 8), 67; stage 4 (k3, /2): 83 (j 16),
    115, 147; stage 5 (k5): 211, 275, 339; stage 6 (k5, /2): 403 (j 32), 531, 659, 787;
    stage 7 (k3): 851.  Every block's squeeze-excite gate is a global side path."""
    rep = report("efficientnet_b0")
    out = rep["features.8.2"]
    assert_field(out, r=851, j=32, start=0.5)
    assert out.global_via[0] == "features.1.0.block.1.avgpool"


def test_unet_encoder_and_decoder():
    """Encoder: double conv 3 pad 1 at j 1: r 5; pool 2/2: 6, j 2, start 1.0; enc2: 14;
    pool: 16, j 4, start 2.0; enc3: 32; pool: 36, j 8, start 4.0; bottleneck: 68, so bottleneck
    unit q sees 8q-30 .. 8q+37.  The skips are nested inside (smaller, centred alike).
    up3 (transposed 2/2) gives level-3 unit m bottleneck unit floor(m/2): period 2; dec3 (two
    3x3) reads up3 units m-2 .. m+2, bottleneck units floor(m/2)-1 .. floor(m/2)+1: r 84.
    up2 (bilinear x2, align_corners False): unit 2p reads level-3 units p-1, p and 2p+1 reads
    p, p+1, so sizes differ by unit (84 or 92): nonuniform, r 92; dec2: r 100.
    Output unit 64: dec1 reads up1 units 61 .. 67 (up1's 3x3 included), i.e. dec2 units 30 .. 33;
    dec2 reads up2 units 28 .. 35, i.e. level-3 units 13 .. 18; dec3 reads up3 units 11 .. 20,
    i.e. bottleneck units 5 .. 10: pixels 8*5-30 .. 8*10+37 = 10 .. 117, r 108 (the largest;
    the output repeats with period 8)."""
    rep = report("unet")
    assert_field(rep["bottleneck.5"], r=68, j=8, start=4.0)
    assert rep["dec3.5"].r == square(84) and rep["dec3.5"].phases == square(2)
    assert rep["up2.0"].r == square(92) and "nonuniform" in rep["up2.0"].flags
    assert rep["dec2.5"].r == square(100)
    out = rep.output
    assert out.r == square(108) and out.j == square(1) and out.phases == square(8)
    assert out.bounds((64, 64)) == ((10, 117), (10, 117))


def test_fpn_levels():
    """Trunk: stem r 11, j 4; one BasicBlock per stage: C2 27 (j 4), C3 35+16 = 51 (j 8),
    C4 67+32 = 99 (j 16), C5 131+64 = 195 (j 32), all start 0.5.
    p5 = 3x3 on lateral(C5): 195+64 = 259, j 32.
    Level 4 (j 16): unit m adds lateral(C4) (16m-49 .. 16m+49) and C5 unit floor(m/2)
    (32*floor(m/2)-97 .. +97): even m 16m-97 .. 16m+97, odd m 16m-113 .. 16m+81; the 3x3 conv
    then sees units m-1 .. m+1: even m 16m-129 .. 16m+97, odd m 16m-113 .. 16m+113: r 227,
    period 2 (unit 4: -65 .. 161, unit 5: -33 .. 193)."""
    rep = report("fpn")
    assert set(rep.outputs) == {"p2", "p3", "p4", "p5"}
    assert_field(rep.outputs["p5"], r=259, j=32, start=0.5)
    p4 = rep.outputs["p4"]
    assert p4.r == square(227) and p4.j == square(16) and p4.phases == square(2)
    assert p4.bounds((4, 5)) == ((-65, 161), (-33, 193))
    assert rep.outputs["p2"].phases == square(8) and rep.outputs["p2"].j == square(4)


def test_fpn_p4_spacing_shows_as_phases_not_nonuniform():
    """p4 units 4 and 5 start at -65 and -33, units 5 and 6 at -33 and -33: the spacing varies
    with period 2 (the phases column), every unit sees 227 pixels, so the flag nonuniform
    (sizes that differ between units, as the decoder issue defines it) is not set."""
    p4 = report("fpn").outputs["p4"]
    assert p4.phases == square(2) and "nonuniform" not in p4.flags
    assert [p4.bounds((m, 5))[0][0] for m in (4, 5, 6)] == [-65, -33, -33]


def test_convnext_tiny_field():
    """Stem 4/4 pad 0: r 4, j 4, start 2.0.  Each block has one 7x7 depthwise conv (+6*j);
    downsampling 2/2 adds j, doubles j, moves start by j/2.  stage 1 (3 blocks, j 4): 4+72 = 76;
    80, j 8, start 4.0; stage 2: 80+144 = 224; 232, j 16, start 8.0; stage 3 (9 blocks):
    232+864 = 1096; 1112, j 32, start 16.0; stage 4: 1112+576 = 1688."""
    rep = report("convnext_tiny")
    assert_field(rep["features.0.0"], r=4, j=4, start=2.0)
    assert_field(rep["features.1.2.add"], r=76, j=4)
    assert_field(rep["features.7.2.add"], r=1688, j=32, start=16.0)


def test_convnext_layernorm2d_is_per_position():
    """LayerNorm2d permutes to channels-last, normalises over C and permutes back: nothing is
    pooled over space, so no feature map before the global average pool is global. (Its own
    forward is traced into, as torchvision's tracer does: its output node is features.0.1.permute_1.)"""
    rep = report("convnext_tiny")
    assert not rep["features.0.1.permute_1"].flags
    assert not rep["features.7.2.add"].flags


def test_vit_tiny_patch_embedding():
    """conv_proj 16/16 pad 0: r 16, j 16, start 8.0; the class-token output is global."""
    rep = report("vit_tiny")
    assert_field(rep["conv_proj"], r=16, j=16, start=8.0)
    assert "global" in rep.output.flags


def assert_compare_agrees(name: str, nodes: list[str]) -> None:
    frame = crosscheck.compare(zoo.build(name), zoo.input_shape(name), nodes=nodes)
    assert list(frame.index) == nodes
    assert frame.attrs["summary"]["agree"] == len(nodes), frame[["status", "reason_text"]]
    assert (frame["status"] == "agree").all()


def test_shufflenet_v2_conv5():
    """conv1 3x3/2 pad 1: r 3, j 2, start 0.5.  maxpool 3x3/2 pad 1: r 7, j 4, start 0.5.
    Every unit has one 3x3 depthwise conv (pad 1) per branch, carrying the stride; the 1x1
    convs, the channel split (the half passed through is nested in the transformed one) and
    the channel shuffle (a view, a transpose of the group and channel axes, a view back) leave
    the field as it is, so each unit adds 2*j at its input's j and start stays 0.5.
    stage2 (4 units): 7+2*4 = 15, j 8, +3*16: 63.  stage3 (8): 63+2*8 = 79, j 16, +7*32: 303.
    stage4 (4): 303+2*16 = 335, j 32, +3*64: 527.  conv5 (1x1): r 527, j 32, start 0.5."""
    rep = report("shufflenet_v2")
    assert_field(rep["maxpool"], r=7, j=4, start=0.5)
    assert_field(rep["stage2.0.cat"], r=15, j=8, start=0.5)
    assert_field(rep["stage2.3.view_1"], r=63, j=8, start=0.5)
    assert_field(rep["stage3.7.view_1"], r=303, j=16, start=0.5)
    assert_field(rep["stage4.0.view_1"], r=335, j=32, start=0.5)
    out = rep["conv5.2"]
    assert_field(out, r=527, j=32, start=0.5)
    assert not out.flags
    assert "global" in rep.output.flags


def test_shufflenet_v2_compare_agrees():
    """The probe through the channel split, concat and shuffle agrees with rfarith: a
    stride-2 unit (both branches, shuffled), then inside a stride-1 unit the half passed
    through, the transformed half and the shuffled concat."""
    assert_compare_agrees("shufflenet_v2", ["maxpool", "stage2.0.cat", "stage2.0.view_1", "stage2.1.getitem", "stage2.1.branch2.3", "stage2.1.view_1"])


def test_shufflenet_v2_probe_inside_a_split_unit():
    """Inside a stride-1 unit, between the channel split and the concat: branch2's 1x1 conv
    on the second half sees what the unit's input sees (stage2.0: r 15, j 8)."""
    result = rfnumeric.probe(zoo.build("shufflenet_v2"), zoo.input_shape("shufflenet_v2"), node="stage2.1.branch2.0")
    assert result.r == square(15) and result.j == square(8)


def test_wavenet_output_is_causal():
    """Every conv is padded on the left only, so unit m's field ends at sample m.  front (k 2,
    left pad 1): r 2, unit m sees m-1 .. m (start 0.5+(1/2-1) = 0.0).  A block's kernel-2 conv
    with dilation d adds d; the residual add and the skip sum take the union of right-aligned
    fields (the largest; flagged misaligned, as their centres differ).  After stack 1:
    2+(1+2+..+512) = 1025; after stack 2: 1025+1023 = 2048.  The skip sum, ReLUs and 1x1 head
    keep it: r 2048, j 1, unit m sees m-2047 .. m, start -2047+2048/2 = -1023."""
    rep = report("wavenet")
    assert rep["front"].r == (2,) and rep["front"].j == (1,) and rep["front"].start == (0.0,)
    assert rep["blocks.0.add"].r == (3,)
    assert rep["blocks.9.add"].r == (1025,)
    out = rep.output
    assert out.node == "head.3"
    assert out.r == (2048,) and out.j == (1,) and out.start == (-1023.0,)
    for m in (0, 5000, 15999):
        assert out.bounds((m,)) == ((m - 2047, m),)
    assert "global" not in out.flags


def test_wavenet_compare_agrees():
    """The probe measures the same causal fields: the front, the first block's outputs and the
    output (r 2048)."""
    assert_compare_agrees("wavenet", ["front", "blocks.0.add", "blocks.0.skip", "head.3"])
