"""Layouts: which dims carry the batch and the input's axes, through reshapes and products."""

from __future__ import annotations

import torch

from rfnumeric import layout as lay

B, H, W = lay.BATCH, 0, 1


def tagged(*shape: int) -> torch.Tensor:
    t = torch.zeros(shape)
    lay.attach(t, lay.input_layout(shape))
    return t


def follow(func, *args, **kwargs):
    out = func(*args, **kwargs)
    layout = lay.propagate(func, args, kwargs, out)
    if isinstance(out, torch.Tensor):
        lay.attach(out, layout)
    return out, layout


def test_input_layout_drops_size_one_dims():
    assert lay.input_layout((2, 3, 8, 5)) == (
        ((B, 2, 1),),
        ((None, 3, 1),),
        ((H, 8, 1),),
        ((W, 5, 1),),
    )
    assert lay.input_layout((1, 1, 8)) == ((), (), ((0, 8, 1),))


def test_tokens_round_trip():
    """flatten(2).transpose(1, 2) makes ViT-style tokens; reshape back recovers the grid."""
    x = tagged(2, 3, 4, 6)
    t, layout = follow(torch.Tensor.flatten, x, 2)
    assert layout[2] == ((H, 4, 1), (W, 6, 1))
    tokens, layout = follow(torch.Tensor.transpose, t, 1, 2)
    assert layout[1] == ((H, 4, 1), (W, 6, 1)) and layout[2] == ((None, 3, 1),)
    grid, layout = follow(torch.Tensor.reshape, tokens, 2, 4, 6, 3)
    assert layout == (((B, 2, 1),), ((H, 4, 1),), ((W, 6, 1),), ((None, 3, 1),))
    assert lay.map_sizes(layout, 2) == (4, 6)


def test_window_partition_splits_an_axis_with_strides():
    """h = 8 viewed as 4 windows of 2: factors (h, 4, stride 2) and (h, 2, stride 1)."""
    x = tagged(1, 3, 8, 8)
    windows, layout = follow(torch.Tensor.view, x, 1, 3, 4, 2, 4, 2)
    assert layout[2] == ((H, 4, 2),) and layout[3] == ((H, 2, 1),)
    shape, index = lay.factor_index(layout, (5, 3), None)
    assert shape == [3, 4, 2, 4, 2] and index[1:] == [2, 1, 1, 1]  # h 5 = window 2, row 1


def test_channels_last_permute_and_layer_norm_dims():
    x = tagged(2, 4, 8, 8)
    y, layout = follow(torch.Tensor.permute, x, 0, 2, 3, 1)
    assert lay.axes_in(layout, (3,), 2) == frozenset()  # LayerNorm over channels: local
    assert lay.axes_in(layout, (1, 2), 2) == {H, W}


def test_reductions_and_global_pooling():
    x = tagged(2, 4, 8, 8)
    _, layout = follow(torch.Tensor.mean, x, (2, 3), keepdim=True)
    assert layout == (((B, 2, 1),), ((None, 4, 1),), (), ())
    _, layout = follow(torch.sum, x, 1)
    assert layout == (((B, 2, 1),), ((H, 8, 1),), ((W, 8, 1),))
    assert lay.reduction_dims(torch.Tensor.amax, (x, (-1, -2)), {}) == ((3, 2), False)
    assert lay.reduction_dims(torch.max, (x, x), {}) is None  # elementwise, not a reduction


def test_broadcast_keeps_the_spatial_operand():
    x = tagged(2, 4, 8, 8)
    gate = torch.zeros(2, 4, 1, 1)
    lay.attach(gate, (((B, 2, 1),), ((None, 4, 1),), (), ()))
    _, layout = follow(torch.mul, gate, x)
    assert layout == lay.input_layout((2, 4, 8, 8))


def test_resizing_ops_keep_their_axes():
    x = tagged(2, 4, 8, 8)
    _, layout = follow(torch.nn.functional.avg_pool2d, x, 2)
    assert lay.map_sizes(layout, 2) == (4, 4)


def test_attention_products():
    q = tagged(2, 3, 4, 4)
    q, _ = follow(torch.Tensor.flatten, q, 2)
    k, _ = follow(torch.Tensor.transpose, q, 1, 2)  # (2, 16, 3)
    scores, layout = follow(torch.matmul, k, q)  # (2, 16, 16): queries x keys
    assert layout[1] == layout[2] == ((H, 4, 1), (W, 4, 1))
    pairs = lay.contracted_dims(torch.matmul, (k, q), {})
    assert [dims for _, dims in pairs] == [(2,), (1,)]


def test_a_reshape_the_factors_cannot_follow_is_mixed():
    """Tokens with a class token in front: positions are there, but no longer locatable."""
    x = tagged(2, 3, 4, 4)
    tokens, _ = follow(torch.Tensor.flatten, x, 2)
    cls = torch.zeros(2, 3, 1)
    out, layout = follow(torch.cat, [cls, tokens], 2)
    assert layout[2] == ((lay.MIXED, 17, 1),)
    assert not lay.locatable(layout)
    assert lay.axes_in(layout, (2,), 2) == {H, W}


def test_assumed_layouts():
    assert lay.assumed((2, 3, 8), input_rank=3) == lay.input_layout((2, 3, 8))
    assert lay.assumed((2, 10), input_rank=4) == (((B, 2, 1),), ((None, 10, 1),))
    assert lay.assumed((2, 3, 4), input_rank=4) is None
