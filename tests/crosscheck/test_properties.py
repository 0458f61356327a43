"""Property tests: on generated networks, rfarith's arithmetic equals the structural probe exactly.

Each generated model (``tests/generators.py``: chains and DAGs of conv / pool / pad layers, 1-D to
3-D, misaligned branches, holes; with ``decoders`` also transposed convolutions, every resize
mode, pixel shuffle and U-Net blocks) is checked two ways:

``crosscheck.compare`` on its output map, whose verdict is the oracle: every corner unit, the
centre unit and a window of ``2P`` units through it along each axis (``P``: the field's period
there) see exactly the same set of input pixels on both sides, at the user's input and, where
the field does not fit there, at the input the probe grew to (rfarith analysed again there).

The CI profile runs a fixed, derandomised set of examples; ``pytest -m slow
tests/crosscheck/test_properties.py`` runs many more random ones (``RFCHECK_SLOW_EXAMPLES``,
default 2000 per strategy; the CI counts are ``RFCHECK_PROPERTY_EXAMPLES`` and
``RFCHECK_DECODER_EXAMPLES``). The suite summary prints how many nets were checked. Counterexamples
found along the way are kept below as regression tests (``REGRESSIONS``).
"""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, given, settings

import crosscheck
import rfarith
from crosscheck.reasons import Reason
from crosscheck.verdict import window
from rfarith.errors import UnsupportedOp
from tests import tally
from tests.generators import (
    Add,
    Chain,
    Concat,
    Conv,
    ConvT,
    Net,
    Pad,
    Pool,
    Resize,
    build,
    nets,
)
from tests.snapshot import ModelSnapshot

CI_EXAMPLES = int(os.environ.get("RFCHECK_PROPERTY_EXAMPLES", "100"))  # conv / pool nets
CI_DECODER_EXAMPLES = int(os.environ.get("RFCHECK_DECODER_EXAMPLES", "40"))
SLOW_EXAMPLES = int(os.environ.get("RFCHECK_SLOW_EXAMPLES", "2000"))

QUIET = [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much]
CI = settings(max_examples=CI_EXAMPLES, deadline=None, database=None, derandomize=True, suppress_health_check=QUIET)
CI_DECODERS = settings(CI, max_examples=CI_DECODER_EXAMPLES)
SLOW = settings(max_examples=SLOW_EXAMPLES, deadline=None, database=None, suppress_health_check=QUIET)

# rfarith refuses, with this message, a merge of maps whose units step differently (a skip path
# added to a decoder path upsampled by a ratio other than the encoder's: align_corners=True)
REFUSED_MERGE = "merges feature maps whose units step differently"


def check_net(net: Net) -> None:
    """The net's output map through ``crosscheck.compare``: its verdict (exact pixel sets of
    the window's units, at the user's input and at the input the probe grew to) must agree.
    The verdict is the property's oracle; the counts say how much it compared."""
    model = build(net)
    shape = net.input_shape
    before = ModelSnapshot.of(model)
    try:
        report = rfarith.analyze(model, shape)
    except UnsupportedOp as e:
        assert REFUSED_MERGE in str(e) and "Way out" in str(e), str(e)
        tally.add("generated nets refused by rfarith (merge of different jumps)")
        return
    output = report.rows[-1].name
    frame = crosscheck.compare(model, shape, nodes=[output])
    row = frame.loc[output]
    assert row["status"] == "agree", crosscheck.render(frame, f"{net}")
    assert row["units_compared"] >= len(window(report[output]))
    tally.add("generated nets agreeing unit by unit")
    tally.add("units compared pixel for pixel", int(row["units_compared"]))
    if len(row["compared_at"]) > 1:
        tally.add("generated nets compared again on the input the probe grew to")
    if Reason.USER_INPUT_ONLY.value in row["reason"]:
        tally.add("generated nets compared at the user's input only (the probe could not grow)")
    before.assert_same(model)


@CI
@given(nets())
def test_conv_pool_nets_agree(net):
    check_net(net)
    tally.add("generated nets checked (conv/pool)")


@CI_DECODERS
@given(nets(decoders=True))
def test_decoder_nets_agree_unit_by_unit(net):
    check_net(net)
    tally.add("generated nets checked (decoders)")


@pytest.mark.slow
@SLOW
@given(nets())
def test_many_conv_pool_nets_agree(net):
    check_net(net)
    tally.add("generated nets checked (conv/pool, slow profile)")


@pytest.mark.slow
@SLOW
@given(nets(decoders=True))
def test_many_decoder_nets_agree(net):
    check_net(net)
    tally.add("generated nets checked (decoders, slow profile)")


# ---- counterexamples found by the properties, kept as regression tests ------------------------
def _conv(k, s=(1, 1), d=(1, 1), p=(0, 0), mode="zeros"):
    return Conv(k, s, d, p, mode)


REGRESSIONS = {
    # a 3-D net of nested merges, a transposed conv and a nearest resize inside a crop: the probe
    # took three adjacent units repeating one pattern for period one (j_d 4, r_d 27; rfarith: 3,
    # 31); crosscheck now has it measure a window of units along axes rfarith finds periodic
    "nested_3d_decoder": Net(spec=Chain(layers=(Add(branches=(Chain(layers=(Add(branches=(Chain(layers=(Pad(amounts=((2, 0), (1, 1), (3, 0))),)), Chain(layers=(Conv(kernel=(4, 1, 2), stride=(1, 1, 1), dilation=(1, 1, 3), padding=(0, 0, 0), padding_mode='zeros'), Pad(amounts=((0, 5), (0, 2), (0, 6))))))), Conv(kernel=(2, 3, 2), stride=(1, 1, 3), dilation=(1, 3, 1), padding=(1, 1, 0), padding_mode='zeros'), Conv(kernel=(2, 1, 2), stride=(1, 3, 1), dilation=(1, 1, 1), padding=(0, 0, 0), padding_mode='zeros'))), Chain(layers=(Conv(kernel=(1, 1, 1), stride=(1, 1, 1), dilation=(1, 1, 1), padding=(0, 0, 0), padding_mode='zeros'), Pool(kind='max', kernel=(1, 1, 2), stride=(1, 1, 1), padding=(0, 0, 0), dilation=(1, 1, 1), ceil_mode=False), Conv(kernel=(2, 1, 1), stride=(1, 3, 3), dilation=(1, 1, 1), padding=(1, 0, 0), padding_mode='zeros'), Pad(amounts=((0, 1), (0, -1), (0, 0))))))), Concat(branches=(Chain(layers=(Conv(kernel=(1, 1, 1), stride=(1, 1, 1), dilation=(1, 1, 1), padding=(0, 0, 0), padding_mode='zeros'),)), Chain(layers=(Pool(kind='max', kernel=(2, 1, 1), stride=(2, 1, 1), padding=(0, 0, 0), dilation=(1, 1, 1), ceil_mode=False), Add(branches=(Chain(layers=(Conv(kernel=(1, 1, 1), stride=(1, 1, 1), dilation=(1, 1, 1), padding=(0, 0, 0), padding_mode='zeros'),)), Chain(layers=(Pool(kind='max', kernel=(2, 1, 1), stride=(2, 1, 1), padding=(0, 0, 0), dilation=(1, 1, 1), ceil_mode=False), Conv(kernel=(2, 3, 2), stride=(1, 1, 1), dilation=(1, 2, 3), padding=(0, 1, 1), padding_mode='zeros'), Resize(mode='nearest', scale=(2.0, 1.0, 1.0), size=None, align_corners=None), Pad(amounts=((0, 2), (0, 2), (0, 1))))))), ConvT(kernel=(4, 1, 3), stride=(2, 1, 1), padding=(1, 0, 1), output_padding=(0, 0, 0), dilation=(1, 1, 1)))))), Pool(kind='avg', kernel=(3, 3, 1), stride=(3, 2, 3), padding=(1, 0, 0), dilation=(1, 1, 1), ceil_mode=False), Add(branches=(Chain(layers=(Conv(kernel=(1, 1, 1), stride=(1, 1, 1), dilation=(1, 1, 1), padding=(0, 0, 0), padding_mode='zeros'),)), Chain(layers=(Pool(kind='avg', kernel=(1, 1, 1), stride=(1, 1, 1), padding=(0, 0, 0), dilation=(1, 1, 1), ceil_mode=False), Conv(kernel=(2, 3, 1), stride=(1, 1, 1), dilation=(1, 3, 1), padding=(0, 5, 0), padding_mode='zeros'), ConvT(kernel=(3, 3, 3), stride=(1, 1, 1), padding=(1, 1, 1), output_padding=(0, 0, 0), dilation=(1, 1, 1)), Pad(amounts=((0, 1), (-3, -1), (0, 0))))))))), input_size=(10, 10, 10), functional=True, channels=2, notes=[]),
    # a 3-unit map next to a reflect border: the unit beside the centre folded back onto pixels
    # that made it look like a shifted copy (j 2 instead of 4); crosscheck now starts the probe
    # on an input with two jumps of room on either side of the field
    "reflect_border_folds_a_neighbour": Net(
        Chain((Add((Chain((_conv((1, 1), (2, 1)),)), Chain((_conv((2, 1), d=(2, 1), p=(2, 0), mode="reflect"), _conv((1, 1), (2, 1)), Pad(((0, -1), (0, 0))))))), _conv((1, 1), (2, 1)))),
        (6, 6),
        functional=False,
    ),
    # a conv cut its map to one unit along h, then F.pad widened it: the probe lost the axis and
    # reported n_h = 1 (rfnumeric.layout: a map cut to one unit keeps its axis)
    "pad_after_one_unit_map": Net(
        Chain((Concat((Chain((_conv((4, 1)), Pad(((2, 4), (0, 0))))), Chain((Pad(((1, 2), (0, 0))), _conv((1, 1)))))),)),
        (4, 9),
        functional=False,
    ),
    # branches cropped by fixed amounts, strides of 3 on an odd input: the grown input broke the
    # crops unless it kept the input's residues mod 3 (rfnumeric.search.keeping_residues)
    "fixed_crops_stride_three": Net(
        Chain((Add((Chain((_conv((1, 1), (3, 3)),)), Chain((_conv((3, 3), (3, 3)), Pad(((0, 1), (0, 1))))))), *[_conv((3, 3), p=(1, 1))] * 4)),
        (13, 13),
        functional=True,
    ),
    # a zero-padded crop inside the model cut the fields of units beside the centre: the probe
    # fitted j = 14/5 from them (now: measured again on a larger input)
    "crop_inside_model": Net(
        Chain((Add((Chain((_conv((3, 1), (3, 3), (3, 1), (2, 0)),)), Chain((_conv((1, 1)), Add((Chain((Pad(((0, 1), (0, -1))),)), Chain((_conv((1, 4), d=(1, 2), p=(0, 1)), Pad(((2, 2), (0, -1))), Pad(((-3, 0), (2, 2))))))), _conv((1, 2), (3, 3), p=(0, 1)), Pad(((-1, 0), (0, 0))))))),)),
        (17, 13),
        functional=True,
    ),
    # a transposed conv with kernel 1 < stride 2 along h: odd units see nothing; the probe
    # took the even units' shift for the jump (now: period 2, nonuniform, no start)
    "transposed_conv_blind_phase": Net(
        Chain((_conv((3, 2), (3, 1), (2, 2), (2, 2), "circular"), ConvT((1, 4), (2, 2), (0, 3), (0, 0), (1, 1)), Pad(((3, 3), (3, 0))))),
        (17, 12),
        functional=True,
    ),
    # a U-Net-style transposed-conv path added to a skip, cropped: periods 2 and 3 with units cut
    # at the border inside the window; the probe read the phase from a cut unit (start off by J)
    "periodic_window_cut_units": Net(
        Chain((Add((Chain((_conv((2, 2), d=(3, 3), p="same"),)), Chain((_conv((2, 3), (2, 3), p=(1, 1)), Pad(((3, 2), (2, 2))), Pool("avg", (3, 1), (1, 1), (0, 0), (1, 1), False), ConvT((3, 3), (2, 3), (0, 0), (0, 0), (1, 1)), Pad(((-4, -4), (-1, -12))))))), _conv((2, 2), p="same"))),
        (17, 17),
        functional=False,
    ),
    # nearest x3 after merges with internal pads: the window around the centre was mostly cut
    # units; the probe found j = 0 from two equal ones (now: measured again on a larger input)
    "nearest_upsampling_after_padded_merges": Net(
        Chain(layers=(Concat(branches=(Chain(layers=(Pad(amounts=((1, -1), (1, -1))),)), Chain(layers=(Conv(kernel=(3, 4), stride=(3, 3), dilation=(1, 1), padding=(1, 2), padding_mode='zeros'), Add(branches=(Chain(layers=(Pad(amounts=((-1, 0), (2, 3))),)), Chain(layers=(Pad(amounts=((3, -1), (0, 2))), Pad(amounts=((-2, -1), (1, 2))))), Chain(layers=(Conv(kernel=(1, 2), stride=(1, 1), dilation=(1, 1), padding=(0, 0), padding_mode='replicate'), Conv(kernel=(1, 1), stride=(1, 1), dilation=(1, 1), padding=(0, 0), padding_mode='zeros'), Pad(amounts=((-1, 0), (3, 3))))))), Add(branches=(Chain(layers=(Conv(kernel=(3, 1), stride=(1, 1), dilation=(3, 1), padding=(1, 0), padding_mode='zeros'), Pad(amounts=((0, 4), (0, 0))))), Chain(layers=(Conv(kernel=(2, 3), stride=(2, 2), dilation=(1, 1), padding=(1, 1), padding_mode='zeros'), Pool(kind='avg', kernel=(2, 2), stride=(1, 1), padding=(0, 0), dilation=(1, 1), ceil_mode=False), Resize(mode='nearest', scale=(2.0, 2.0), size=None, align_corners=None), Pad(amounts=((0, 0), (0, 2))))))), Resize(mode='nearest', scale=(3.0, 3.0), size=None, align_corners=None), Pad(amounts=((1, 2), (-8, -9))))))),)),
        (21, 7),
        functional=True,
    ),
    # bilinear x3 (align_corners=False) in a float32 model: unit 3q+1 sits exactly on input q,
    # but float32 rounding leaves its right neighbour a weight of 1.5e-8, which the float64
    # probe rounded to 0 (w 1..5 against rfarith's 0..8); the probe now reads each resize's
    # index map in the model's dtype (rfnumeric.surrogates.resize_taps)
    "unit_mismatch_2d_decoder": Net(spec=Chain(layers=(Conv(kernel=(2, 3), stride=(1, 1), dilation=(1, 3), padding=(0, 2), padding_mode='zeros'), Add(branches=(Chain(layers=(Conv(kernel=(1, 1), stride=(1, 1), dilation=(1, 1), padding=(0, 0), padding_mode='reflect'),)), Chain(layers=(Conv(kernel=(3, 4), stride=(2, 3), dilation=(1, 1), padding=(1, 2), padding_mode='zeros'), Pool(kind='max', kernel=(3, 1), stride=(1, 1), padding=(0, 0), dilation=(1, 1), ceil_mode=False), Resize(mode='bilinear', scale=(2.0, 3.0), size=None, align_corners=False), Pad(amounts=((0, 4), (0, -1))))))))), input_size=(15, 19), functional=False, channels=2, notes=[]),
    # the same rounding of a float32 bilinear x3 inside a concatenated decoder path
    "padded_concat_decoder": Net(spec=Chain(layers=(Conv(kernel=(3, 4), stride=(1, 1), dilation=(3, 3), padding=(4, 7), padding_mode='zeros'), Concat(branches=(Chain(layers=(Pad(amounts=((2, 2), (0, 3))), Pad(amounts=((-3, -1), (-2, -1))))), Chain(layers=(Conv(kernel=(3, 4), stride=(2, 3), dilation=(1, 1), padding=(1, 2), padding_mode='zeros'), Concat(branches=(Chain(layers=(Conv(kernel=(3, 4), stride=(1, 1), dilation=(1, 3), padding=(0, 3), padding_mode='zeros'), Pad(amounts=((0, 2), (3, 0))))), Chain(layers=(Conv(kernel=(4, 2), stride=(3, 2), dilation=(1, 1), padding=(2, 1), padding_mode='zeros'), Conv(kernel=(3, 1), stride=(1, 1), dilation=(3, 1), padding=(5, 0), padding_mode='zeros'), Resize(mode='bilinear', scale=(3.0, 2.0), size=None, align_corners=False), Pad(amounts=((-1, -14), (-1, 0))))))), ConvT(kernel=(2, 5), stride=(2, 3), padding=(0, 1), output_padding=(0, 0), dilation=(1, 1)), Pad(amounts=((-1, 0), (0, -3))))))))), input_size=(15, 19), functional=False, channels=2, notes=[]),
    # a 7-pixel input, a stride-3 conv (3 units), a nearest resize to 6 units: the probe must
    # measure at the user's size (the resize follows the input), where four of the six units
    # touch the border; the two whole ones read the same pixel and passed for period 1, j 0
    # (rfarith: period 2, j 3/2). A period now needs two repeats covering every phase; with
    # fewer whole units the probe leaves j, r and start unmeasured and says why
    "fixed_size_resize_of_a_tiny_map": Net(
        Chain((Conv((1,), (3,), (1,), (0,)), Resize("nearest", None, (6,), None))), (7,), functional=False
    ),
    # a skip added to a pool / conv / nearest x2 path padded by 3 at its end: at the probe's
    # input (21) the window of units around the centre reached the last three, which see one
    # pixel (the pad cut their field inside the model, not at the input's border, so they
    # looked whole); no period fit, flag nonuniform. A window no period explains is now
    # measured again on a larger input
    "window_reaches_units_cut_inside_the_model": Net(
        Chain((Add((Chain((Conv((1,), (1,), (1,), (0,)),)), Chain((Pool("max", (2,), (2,), (0,), (1,), False), Conv((2,), (1,), (1,), (0,)), Resize("nearest", (2.0,), None, None), Pad(((0, 3),)))))),)),
        (9,),
        functional=False,
    ),
    # nested U-Net levels (pool 2x3, then pool 3x1 and nearest x3x1 inside, nearest x2x3 out):
    # the window of units along w still held units cut by the crops inside the model, which
    # looked whole; the probe found no period and reported the mean jump 15/16 and start
    # 1.6875 where rfarith has j 1 and start 3 (fixed with the one above)
    "nested_unet_levels": Net(
        Chain(layers=(Add(branches=(Chain(layers=(Conv(kernel=(1, 1), stride=(1, 1), dilation=(1, 1), padding=(0, 0), padding_mode='zeros'),)), Chain(layers=(Pool(kind='max', kernel=(2, 3), stride=(2, 3), padding=(0, 0), dilation=(1, 1), ceil_mode=False), Add(branches=(Chain(layers=(Conv(kernel=(1, 1), stride=(1, 1), dilation=(1, 1), padding=(0, 0), padding_mode='zeros'),)), Chain(layers=(Pool(kind='max', kernel=(3, 1), stride=(3, 1), padding=(0, 0), dilation=(1, 1), ceil_mode=False), Conv(kernel=(1, 2), stride=(1, 1), dilation=(1, 1), padding=(0, 0), padding_mode='zeros'), Resize(mode='nearest', scale=(3.0, 1.0), size=None, align_corners=None), Pad(amounts=((1, 0), (0, 1))))))), Resize(mode='nearest', scale=(2.0, 3.0), size=None, align_corners=None), Pad(amounts=((0, 1), (0, 2))))))),)),
        (15, 11),
        functional=False,
    ),
    # a transposed conv with kernel 1 < stride 3 along w, then a circular-padded branch added to
    # a stride-3 conv / transposed-conv branch: the second branch reaches only some columns, so
    # the field is not a product of per-axis fields. The probe measured the h window at the
    # centre column only (r_h 10, start -4; rfarith's per-axis field: 12, -3); a window along
    # one periodic axis now seeds a band of MAX_PERIOD units across the other periodic axes
    "transposed_conv_output_padding_merge": Net(spec=Chain(layers=(ConvT(kernel=(3, 1), stride=(1, 3), padding=(2, 0), output_padding=(1, 1), dilation=(2, 1)), Add(branches=(Chain(layers=(Conv(kernel=(3, 2), stride=(1, 1), dilation=(2, 2), padding=(4, 1), padding_mode='circular'), Pad(amounts=((-3, -1), (0, 0))))), Chain(layers=(Conv(kernel=(3, 4), stride=(3, 3), dilation=(1, 1), padding=(1, 2), padding_mode='zeros'), Conv(kernel=(1, 1), stride=(1, 1), dilation=(1, 1), padding=(0, 0), padding_mode='zeros'), ConvT(kernel=(4, 3), stride=(3, 3), padding=(0, 0), output_padding=(0, 0), dilation=(1, 1)), Pad(amounts=((0, -2), (-1, 0))))))), Pad(amounts=((3, 1), (3, -1))))), input_size=(22, 8), functional=False, channels=2, notes=[]),
    # a 3-D net whose last max pool (kernel 3, padding 1) gets a 2-unit axis: max_pool3d counts
    # the padding, avg_pool3d (the probe's surrogate) rejected the input as smaller than the
    # kernel; such inputs now take the box-filter surrogate
    "probe_forward_fails_3d_pools": Net(spec=Chain(layers=(Concat(branches=(Chain(layers=(Conv(kernel=(1, 2, 2), stride=(2, 1, 1), dilation=(1, 1, 2), padding=(0, 0, 0), padding_mode='zeros'),)), Chain(layers=(Pool(kind='avg', kernel=(1, 1, 2), stride=(1, 1, 1), padding=(0, 0, 1), dilation=(1, 1, 1), ceil_mode=True), Conv(kernel=(1, 1, 1), stride=(1, 1, 1), dilation=(1, 1, 1), padding=(0, 0, 0), padding_mode='zeros'), Conv(kernel=(2, 2, 3), stride=(2, 1, 1), dilation=(1, 1, 1), padding=(1, 1, 1), padding_mode='zeros'), Pad(amounts=((0, 0), (0, -2), (-3, 0))))), Chain(layers=(Conv(kernel=(4, 2, 2), stride=(1, 1, 1), dilation=(2, 3, 3), padding=(1, 2, 0), padding_mode='circular'), Conv(kernel=(1, 3, 1), stride=(2, 1, 1), dilation=(1, 1, 1), padding=(0, 1, 0), padding_mode='zeros'), Pad(amounts=((1, 1), (-1, -1), (0, 1))))))), Add(branches=(Chain(layers=(Add(branches=(Chain(layers=(Conv(kernel=(4, 1, 1), stride=(1, 1, 1), dilation=(3, 1, 1), padding='same', padding_mode='zeros'),)), Chain(layers=(Pool(kind='avg', kernel=(1, 1, 2), stride=(1, 1, 1), padding=(0, 0, 0), dilation=(1, 1, 1), ceil_mode=True), Conv(kernel=(3, 2, 4), stride=(1, 1, 1), dilation=(3, 1, 2), padding=(3, 1, 4), padding_mode='circular'), Pad(amounts=((0, 0), (-1, 0), (-1, 0))))))), Pool(kind='max', kernel=(1, 3, 3), stride=(2, 2, 1), padding=(0, 0, 1), dilation=(1, 1, 2), ceil_mode=True), Pad(amounts=((2, 0), (-1, 0), (2, 1))))), Chain(layers=(Conv(kernel=(3, 2, 3), stride=(1, 1, 1), dilation=(1, 2, 3), padding=(0, 0, 2), padding_mode='reflect'), Pad(amounts=((3, 2), (3, 2), (-1, -1))), Conv(kernel=(1, 1, 1), stride=(2, 2, 1), dilation=(1, 1, 1), padding=(0, 0, 0), padding_mode='zeros'), Pad(amounts=((1, 0), (-2, -1), (3, 2))))), Chain(layers=(Conv(kernel=(3, 4, 2), stride=(1, 1, 1), dilation=(1, 1, 3), padding=(2, 3, 0), padding_mode='circular'), Pool(kind='max', kernel=(3, 3, 1), stride=(1, 1, 1), padding=(0, 1, 0), dilation=(1, 1, 1), ceil_mode=False), Conv(kernel=(3, 2, 2), stride=(2, 2, 1), dilation=(1, 1, 1), padding=(1, 1, 1), padding_mode='zeros'), Pad(amounts=((1, 1), (-1, -3), (1, 2))))))), Concat(branches=(Chain(layers=(Pad(amounts=((0, 2), (0, 0), (0, 1))), Conv(kernel=(4, 1, 1), stride=(1, 1, 1), dilation=(1, 1, 1), padding='same', padding_mode='zeros'))), Chain(layers=(Conv(kernel=(1, 1, 1), stride=(1, 1, 1), dilation=(1, 1, 1), padding=(0, 0, 0), padding_mode='zeros'), Pad(amounts=((0, 2), (0, 0), (0, 1))))), Chain(layers=(Pad(amounts=((-1, -1), (0, -1), (2, 0))), Pool(kind='avg', kernel=(1, 1, 2), stride=(1, 1, 1), padding=(0, 0, 1), dilation=(1, 1, 1), ceil_mode=False), Pad(amounts=((0, 4), (1, 0), (0, -2))))))), Pool(kind='max', kernel=(2, 3, 3), stride=(3, 1, 2), padding=(1, 1, 0), dilation=(1, 1, 1), ceil_mode=True))), input_size=(9, 8, 7), functional=False, channels=2, notes=[]),
    # a float32 bilinear x3 whose index map PyTorch rounds differently from unit to unit: the
    # exact field has no period shorter than the map (rfarith's phase 0 is unit 0 itself, start
    # -0.5), while the probe extrapolates the period-3 lattice of its window (start -2)
    "resize_rounding_leaves_no_period": Net(spec=Chain(layers=(Pad(amounts=((1, 2), (0, 0))), Add(branches=(Chain(layers=(Add(branches=(Chain(layers=(Pool(kind='max', kernel=(1, 2), stride=(1, 1), padding=(0, 0), dilation=(1, 1), ceil_mode=False), Pad(amounts=((0, 0), (0, 1))))), Chain(layers=(Conv(kernel=(3, 2), stride=(3, 2), dilation=(1, 1), padding=(1, 1), padding_mode='zeros'), Pool(kind='max', kernel=(1, 2), stride=(1, 1), padding=(0, 0), dilation=(1, 1), ceil_mode=False), Resize(mode='bilinear', scale=(3.0, 2.0), size=None, align_corners=False), Pad(amounts=((0, -2), (0, 0))))))),)), Chain(layers=(Add(branches=(Chain(layers=(Conv(kernel=(1, 1), stride=(1, 1), dilation=(1, 1), padding=(0, 0), padding_mode='zeros'),)), Chain(layers=(Conv(kernel=(1, 1), stride=(1, 1), dilation=(1, 1), padding=(0, 0), padding_mode='zeros'),)))),)))), Conv(kernel=(1, 1), stride=(2, 1), dilation=(1, 1), padding=(0, 0), padding_mode='zeros'))), input_size=(7, 6), functional=False, channels=2, notes=[]),
    # a branch that avg-pools a map to one unit along w, then a bilinear align_corners resize
    # spreads it: rfarith took every unit seeing the same pixels for a global side path and
    # left the branch out of the local field (centre unit h 2..7; the probe and brute force:
    # 0..12); such a path now stays in the field, and the summary differs for a stated reason
    "one_unit_map_resized_into_a_merge": Net(spec=Chain(layers=(Add(branches=(Chain(layers=(Pad(amounts=((0, -1), (2, 0))), Pad(amounts=((0, 1), (-1, -1))))), Chain(layers=(Conv(kernel=(3, 4), stride=(3, 3), dilation=(1, 1), padding=(1, 2), padding_mode='zeros'), Conv(kernel=(1, 1), stride=(1, 1), dilation=(1, 1), padding=(0, 0), padding_mode='zeros'), Concat(branches=(Chain(layers=(Conv(kernel=(1, 3), stride=(1, 1), dilation=(1, 2), padding=(0, 4), padding_mode='zeros'), Pad(amounts=((0, 0), (-2, -2))))), Chain(layers=(Pool(kind='avg', kernel=(1, 3), stride=(1, 3), padding=(0, 0), dilation=(1, 1), ceil_mode=False), Conv(kernel=(2, 4), stride=(1, 1), dilation=(1, 3), padding=(0, 5), padding_mode='zeros'), Pool(kind='avg', kernel=(3, 3), stride=(1, 1), padding=(0, 0), dilation=(1, 1), ceil_mode=True), Resize(mode='bilinear', scale=(1.0, 3.0), size=None, align_corners=True), Pad(amounts=((1, 2), (0, 3))))))), Resize(mode='nearest', scale=(3.0, 3.0), size=None, align_corners=None), Pad(amounts=((0, -2), (-2, 0))))))), ConvT(kernel=(4, 3), stride=(3, 1), padding=(6, 3), output_padding=(0, 0), dilation=(2, 2)), Conv(kernel=(3, 4), stride=(1, 1), dilation=(2, 3), padding='same', padding_mode='zeros'))), input_size=(13, 16), functional=True, channels=2, notes=[]),
    # the same along d in 3-D (trilinear align_corners): kept in the field, the merge with the
    # other branch's step along w is now refused, as every merge of different steps is
    "one_unit_map_resized_3d": Net(spec=Chain(layers=(Add(branches=(Chain(layers=(Add(branches=(Chain(layers=(Conv(kernel=(2, 3, 2), stride=(1, 1, 1), dilation=(2, 2, 3), padding=(2, 0, 1), padding_mode='circular'), Pad(amounts=((-1, -1), (0, 4), (0, 1))))), Chain(layers=(Conv(kernel=(3, 2, 3), stride=(3, 1, 3), dilation=(1, 1, 1), padding=(1, 1, 1), padding_mode='zeros'), Conv(kernel=(3, 2, 1), stride=(1, 1, 1), dilation=(3, 2, 1), padding=(2, 0, 0), padding_mode='zeros'), Resize(mode='trilinear', scale=(3.0, 1.0, 3.0), size=None, align_corners=True), Pad(amounts=((0, 6), (0, 1), (0, -2))))))), Conv(kernel=(4, 3, 3), stride=(1, 1, 1), dilation=(1, 2, 3), padding='same', padding_mode='zeros'), Conv(kernel=(3, 2, 1), stride=(3, 1, 1), dilation=(3, 2, 1), padding=(2, 0, 0), padding_mode='zeros'))), Chain(layers=(Conv(kernel=(2, 4, 1), stride=(1, 1, 1), dilation=(1, 1, 1), padding=(1, 3, 0), padding_mode='zeros'), Conv(kernel=(1, 2, 2), stride=(3, 1, 1), dilation=(1, 1, 1), padding=(0, 1, 1), padding_mode='zeros'), Pad(amounts=((0, -1), (0, -6), (0, -1))))), Chain(layers=(Conv(kernel=(1, 1, 3), stride=(1, 1, 1), dilation=(1, 1, 2), padding=(0, 0, 0), padding_mode='zeros'), Conv(kernel=(1, 1, 3), stride=(3, 1, 1), dilation=(1, 1, 1), padding=(0, 0, 1), padding_mode='zeros'), Pad(amounts=((0, 0), (0, -2), (0, 4))))))),)), input_size=(9, 5, 7), functional=False, channels=2, notes=[]),
    # linear align_corners resize 6 -> 12: period 11, jump 5 (j 5/11, nonuniform); the probe's
    # window of 8 units found a period-2 pattern (j 1/2) and no nonuniform; a summary or flag
    # difference along an axis whose period exceeds the probe's 8 units is now stated
    "period_longer_than_the_probe_window": Net(Chain((Resize("linear", None, (12,), True),)), (6,), functional=False),
    # a float32 bilinear x3 inside nested merges, then a stride-2 conv: the rounded index map
    # gives rfarith a period of 6 over 9 units (start 3); the probe extrapolates its window
    # (start 0); every unit agrees: the field has the flag rounding, the difference is stated
    "rounding_after_nested_merges": Net(spec=Chain(layers=(Add(branches=(Chain(layers=(Conv(kernel=(1, 1), stride=(1, 1), dilation=(1, 1), padding=(0, 0), padding_mode='zeros'),)), Chain(layers=(Pool(kind='max', kernel=(2, 2), stride=(2, 2), padding=(0, 0), dilation=(1, 1), ceil_mode=False), Add(branches=(Chain(layers=(Conv(kernel=(1, 1), stride=(1, 1), dilation=(1, 1), padding=(0, 0), padding_mode='zeros'),)), Chain(layers=(Pool(kind='max', kernel=(3, 2), stride=(3, 2), padding=(0, 0), dilation=(1, 1), ceil_mode=False), Conv(kernel=(1, 1), stride=(1, 1), dilation=(1, 1), padding=(0, 0), padding_mode='zeros'), Resize(mode='bilinear', scale=(3.0, 2.0), size=None, align_corners=False), Pad(amounts=((0, 2), (0, 0))))))), Resize(mode='nearest', scale=(2.0, 2.0), size=None, align_corners=None), Pad(amounts=((0, 1), (0, 0))))))), Conv(kernel=(1, 1), stride=(2, 1), dilation=(1, 1), padding=(0, 0), padding_mode='zeros'))), input_size=(17, 12), functional=False, channels=2, notes=[]),
    # a stride-3 conv, a 1-row map resized by 1 then 3 along h into a merge: the one-unit path
    # adds holes and nonuniform sizes to rfarith's field at this input, which the probe's larger
    # input does not have; those flags join the stated reason for broadcast axes
    "one_unit_map_flags": Net(spec=Chain(layers=(Add(branches=(Chain(layers=(Conv(kernel=(1, 1), stride=(1, 1), dilation=(1, 1), padding=(0, 0), padding_mode='zeros'),)), Chain(layers=(Conv(kernel=(3, 2), stride=(3, 2), dilation=(1, 1), padding=(1, 1), padding_mode='zeros'), Add(branches=(Chain(layers=(Conv(kernel=(1, 1), stride=(1, 1), dilation=(1, 1), padding=(0, 0), padding_mode='zeros'),)), Chain(layers=(Pool(kind='max', kernel=(1, 1), stride=(1, 1), padding=(0, 0), dilation=(1, 1), ceil_mode=False), Conv(kernel=(3, 2), stride=(1, 1), dilation=(1, 1), padding=(0, 0), padding_mode='zeros'), Resize(mode='nearest', scale=(1.0, 1.0), size=None, align_corners=None), Pad(amounts=((0, 2), (0, 1))))))), Conv(kernel=(1, 1), stride=(1, 1), dilation=(1, 1), padding=(0, 0), padding_mode='zeros'), Resize(mode='nearest', scale=(3.0, 2.0), size=None, align_corners=None), Pad(amounts=((0, -2), (0, -2))))))),)), input_size=(7, 6), functional=False, channels=2, notes=[]),
    # nearest resize by (2, 0.75): periodic along both axes, so the windows seed bands; a band's
    # support (several units' pixels) has gaps of its own and was read as holes
    "banded_steps_are_not_holes": Net(Chain((Resize("nearest", (2.0, 0.75), None, None),)), (6, 6), functional=False),
    # a map of one row at this input, resized: every path is constant along h (global here only)
    "every_path_through_one_row": Net(spec=Chain(layers=(Add(branches=(Chain(layers=(Pool(kind='avg', kernel=(2, 2), stride=(1, 1), padding=(0, 0), dilation=(1, 1), ceil_mode=False), Pad(amounts=((0, 1), (0, 1))))), Chain(layers=(Conv(kernel=(4, 3), stride=(3, 3), dilation=(1, 1), padding=(2, 1), padding_mode='zeros'), Conv(kernel=(1, 1), stride=(1, 1), dilation=(1, 1), padding=(0, 0), padding_mode='zeros'), Conv(kernel=(1, 1), stride=(1, 1), dilation=(1, 1), padding=(0, 0), padding_mode='zeros'), Resize(mode='nearest', scale=(3.0, 3.0), size=None, align_corners=None), Pad(amounts=((0, -2), (0, -1))))))), Conv(kernel=(3, 4), stride=(3, 1), dilation=(2, 1), padding=(0, 0), padding_mode='zeros'), Add(branches=(Chain(layers=(Conv(kernel=(1, 1), stride=(1, 1), dilation=(1, 1), padding=(0, 0), padding_mode='zeros'),)), Chain(layers=(Conv(kernel=(1, 1), stride=(1, 1), dilation=(1, 1), padding=(0, 0), padding_mode='zeros'), Pool(kind='avg', kernel=(1, 3), stride=(1, 1), padding=(0, 1), dilation=(1, 1), ceil_mode=True))), Chain(layers=(Conv(kernel=(1, 4), stride=(1, 1), dilation=(1, 2), padding=(0, 5), padding_mode='zeros'), Pad(amounts=((0, 0), (0, -4))))))), Resize(mode='bilinear', scale=(2.0, 2.5), size=None, align_corners=False))), input_size=(7, 17), functional=True, channels=2, notes=[]),
    # a map of one column broadcast along w whose path reaches further along h than the others
    "broadcast_path_reaches_along_another_axis": Net(spec=Chain(layers=(Add(branches=(Chain(layers=(Conv(kernel=(1, 1), stride=(1, 1), dilation=(1, 1), padding=(0, 0), padding_mode='zeros'),)), Chain(layers=(Conv(kernel=(4, 3), stride=(3, 2), dilation=(1, 1), padding=(2, 1), padding_mode='zeros'), Add(branches=(Chain(layers=(Conv(kernel=(2, 1), stride=(1, 1), dilation=(3, 1), padding=(0, 0), padding_mode='zeros'), Pad(amounts=((0, 3), (0, 0))))), Chain(layers=(Pool(kind='max', kernel=(2, 2), stride=(2, 2), padding=(0, 0), dilation=(1, 1), ceil_mode=False), Conv(kernel=(1, 2), stride=(1, 1), dilation=(1, 2), padding=(0, 0), padding_mode='zeros'), Pool(kind='max', kernel=(1, 3), stride=(1, 1), padding=(0, 0), dilation=(1, 1), ceil_mode=False), Resize(mode='nearest', scale=(2.0, 2.0), size=None, align_corners=None), Pad(amounts=((0, 0), (0, 9))))))), Resize(mode='nearest', scale=(3.0, 2.0), size=None, align_corners=None), Pad(amounts=((0, -2), (0, 0))))))), Pool(kind='max', kernel=(1, 1), stride=(1, 1), padding=(0, 0), dilation=(1, 1), ceil_mode=False), Concat(branches=(Chain(layers=(Add(branches=(Chain(layers=(Pool(kind='max', kernel=(3, 3), stride=(1, 1), padding=(1, 0), dilation=(1, 1), ceil_mode=False),)), Chain(layers=(Conv(kernel=(1, 1), stride=(1, 1), dilation=(1, 1), padding=(0, 0), padding_mode='replicate'), Conv(kernel=(3, 1), stride=(1, 1), dilation=(3, 1), padding=(0, 0), padding_mode='zeros'), Pad(amounts=((2, 4), (0, -2))))))),)), Chain(layers=(Conv(kernel=(1, 3), stride=(1, 1), dilation=(1, 2), padding=(0, 0), padding_mode='zeros'), Pad(amounts=((0, 0), (0, 2))))))), Pool(kind='avg', kernel=(1, 1), stride=(2, 2), padding=(0, 0), dilation=(1, 1), ceil_mode=True))), input_size=(16, 22), functional=True, channels=2, notes=[]),
    # a transposed conv with kernel 2 < stride 3: units two apart read one pixel across a blind phase
    "blind_phase_between_units_reading_one_pixel": Net(spec=Chain(layers=(ConvT(kernel=(1, 2), stride=(1, 3), padding=(0, 0), output_padding=(0, 0), dilation=(1, 1)),)), input_size=(6, 6), functional=False, channels=2, notes=[]),
    # a broadcast map of two units upsampled by a transposed conv (kernel 1 < stride 3): a path
    # every unit of a phase sees alike, beside paths that step
    "broadcast_path_with_blind_phases": Net(spec=Chain(layers=(Conv(kernel=(2,), stride=(2,), dilation=(3,), padding=(0,), padding_mode='zeros'), Add(branches=(Chain(layers=(Add(branches=(Chain(layers=(Conv(kernel=(2,), stride=(1,), dilation=(1,), padding=(0,), padding_mode='zeros'), Pad(amounts=((0, 1),)))), Chain(layers=(Pool(kind='max', kernel=(1,), stride=(1,), padding=(0,), dilation=(1,), ceil_mode=False), Conv(kernel=(1,), stride=(1,), dilation=(1,), padding=(0,), padding_mode='zeros'), Conv(kernel=(2,), stride=(1,), dilation=(2,), padding=(0,), padding_mode='zeros'), Resize(mode='linear', scale=(1.0,), size=None, align_corners=False), Pad(amounts=((0, 2),)))))), Add(branches=(Chain(layers=(Conv(kernel=(1,), stride=(1,), dilation=(1,), padding=(0,), padding_mode='zeros'), Conv(kernel=(4,), stride=(3,), dilation=(1,), padding=(1,), padding_mode='zeros'), Conv(kernel=(1,), stride=(3,), dilation=(1,), padding=(0,), padding_mode='zeros'))), Chain(layers=(Conv(kernel=(2,), stride=(1,), dilation=(1,), padding=(0,), padding_mode='zeros'), Conv(kernel=(1,), stride=(9,), dilation=(1,), padding=(0,), padding_mode='zeros'))), Chain(layers=(Conv(kernel=(1,), stride=(1,), dilation=(1,), padding=(0,), padding_mode='zeros'), Conv(kernel=(4,), stride=(1,), dilation=(2,), padding='same', padding_mode='zeros'), Conv(kernel=(2,), stride=(9,), dilation=(1,), padding=(1,), padding_mode='zeros'))))), Conv(kernel=(2,), stride=(2,), dilation=(2,), padding=(2,), padding_mode='zeros'))), Chain(layers=(Pad(amounts=((0, 0),)), Conv(kernel=(1,), stride=(1,), dilation=(1,), padding=(0,), padding_mode='zeros'), Conv(kernel=(1,), stride=(18,), dilation=(1,), padding=(0,), padding_mode='zeros'), Pad(amounts=((0, 1),)))), Chain(layers=(Conv(kernel=(1,), stride=(1,), dilation=(1,), padding=(0,), padding_mode='zeros'), Conv(kernel=(1,), stride=(18,), dilation=(1,), padding=(0,), padding_mode='zeros'), Pad(amounts=((0, 1),)))))), ConvT(kernel=(1,), stride=(3,), padding=(0,), output_padding=(0,), dilation=(1,)), Concat(branches=(Chain(layers=(Conv(kernel=(1,), stride=(1,), dilation=(1,), padding=(0,), padding_mode='zeros'),)), Chain(layers=(Pool(kind='max', kernel=(1,), stride=(1,), padding=(0,), dilation=(1,), ceil_mode=False), Pool(kind='max', kernel=(1,), stride=(1,), padding=(0,), dilation=(1,), ceil_mode=False), Resize(mode='nearest', scale=(1.0,), size=None, align_corners=None))))))), input_size=(8,), functional=False, channels=2, notes=[]),
    # align_corners=True by a scale factor: j = (n_in - 1) / (n_out - 1) changes as the probe grows
    "align_corners_ratio_follows_the_size": Net(spec=Chain(layers=(Resize(mode='bilinear', scale=(2.0, 1.5), size=None, align_corners=True),)), input_size=(6, 6), functional=False, channels=2, notes=[]),
    # a pixel beside (not inside) a resized pool's window: a hole at one phase combination only
    "holes_at_one_phase_combination": Net(spec=Chain(layers=(Add(branches=(Chain(layers=(Conv(kernel=(1, 1), stride=(1, 1), dilation=(1, 1), padding=(0, 0), padding_mode='zeros'),)), Chain(layers=(Pool(kind='max', kernel=(2, 3), stride=(2, 3), padding=(0, 0), dilation=(1, 1), ceil_mode=False), Add(branches=(Chain(layers=(Conv(kernel=(1, 1), stride=(1, 1), dilation=(1, 1), padding=(0, 0), padding_mode='zeros'),)), Chain(layers=(Pool(kind='max', kernel=(1, 2), stride=(1, 2), padding=(0, 0), dilation=(1, 1), ceil_mode=False), Conv(kernel=(1, 1), stride=(1, 1), dilation=(1, 1), padding=(0, 0), padding_mode='zeros'), Resize(mode='nearest', scale=(1.0, 2.0), size=None, align_corners=None), Pad(amounts=((0, 0), (0, 1))))))), Resize(mode='nearest', scale=(2.0, 3.0), size=None, align_corners=None), Pad(amounts=((0, 0), (1, 0))))))),)), input_size=(6, 22), functional=False, channels=2, notes=[]),
}


@pytest.mark.parametrize("name", sorted(REGRESSIONS))
def test_regression(name):
    check_net(REGRESSIONS[name])

