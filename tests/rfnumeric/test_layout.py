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
    """q @ k^T: the first dim keeps the grid (a unit of the scores is a query); the keys are
    labelled Keys (every unit reads all of them: global, locating nothing), so the scores map
    has the grid's units and the product is still seen as queries x keys."""
    q = tagged(2, 3, 4, 4)
    q, _ = follow(torch.Tensor.flatten, q, 2)
    k, _ = follow(torch.Tensor.transpose, q, 1, 2)  # (2, 16, 3)
    scores, layout = follow(torch.matmul, k, q)  # (2, 16, 16): queries x keys
    assert layout[1] == ((H, 4, 1), (W, 4, 1))
    assert layout[2] == ((lay.Keys(H), 16, 1), (lay.Keys(W), 1, 1))
    assert lay.map_sizes(layout, 2) == (4, 4) and lay.locatable(layout)
    assert lay.spatial_labels(layout[2]) == {H, W}  # all pairs: the probe cuts it as global
    assert lay.axes_in(layout, (2,), 2) == {H, W}  # softmax over the keys is global
    pairs = lay.contracted_dims(torch.matmul, (k, q), {})
    assert [dims for _, dims in pairs] == [(2,), (1,)]
    out, layout = follow(torch.matmul, scores, k)  # att @ v: the rows keep the queries' grid
    assert layout[1] == ((H, 4, 1), (W, 4, 1)) and layout[2] == ((None, 3, 1),)


def class_tokens(prefix: int = 1):
    """(2, 3, 4, 4) -> tokens (2, 16, 3), ``prefix`` constant tokens in front: (2, 16+prefix, 3)."""
    x = torch.zeros(2, 3, 4, 4, requires_grad=True)
    lay.attach(x, lay.input_layout(x.shape))
    tokens, _ = follow(torch.Tensor.flatten, x, 2)
    tokens, _ = follow(torch.Tensor.transpose, tokens, 1, 2)
    cls = torch.zeros(2, prefix, 3)  # a parameter: no path from the input
    return follow(torch.cat, [cls, tokens], 1)


def test_class_token_in_front_keeps_the_grid():
    """cat([cls, tokens], 1): a PREFIX factor of 1 token, then the grid; units are placed one
    token further (seed_positions); only callers that place seeds with seed_positions may
    locate them (offsets=True), the others still refuse rather than seed a neighbour."""
    out, layout = class_tokens()
    assert layout[1] == ((lay.PREFIX, 1, 0), (H, 4, 1), (W, 4, 1))
    assert lay.matches(layout, out.shape) and lay.map_sizes(layout, 2) == (4, 4)
    assert lay.locatable(layout, offsets=True) and not lay.locatable(layout)
    assert lay.seed_positions(layout[1], (1, 2), None) == [1 + 1 * 4 + 2]
    assert lay.seed_positions(layout[1], (), None) == list(range(17))
    assert lay.axes_in(layout, (1,), 2) == {H, W}
    grid, g = follow(torch.Tensor.__getitem__, out, (slice(None), slice(1, None)))
    assert g[1] == ((H, 4, 1), (W, 4, 1)) and lay.locatable(g)
    cls, c = follow(torch.Tensor.__getitem__, out, (slice(None), 0))
    assert c == (((B, 2, 1),), ((None, 3, 1),))
    heads, h = follow(torch.Tensor.reshape, out, 2, 17, 3, 1)  # the token dim stays whole
    assert h[1] == layout[1]
    assert lay.reshape_layout(layout, (2, 17 * 3)) is None  # merged with the features: not followed


def test_register_tokens_and_their_seed():
    out, layout = class_tokens(prefix=4)
    assert layout[1][0] == (lay.PREFIX, 4, 0) and lay.dim_size(layout[1]) == 20
    assert lay.seed_positions(layout[1], (0, 0), None) == [4]
    assert lay.seed_positions(layout[1], (3, 3), None) == [19]


def test_tokens_of_two_grids_concatenated_are_mixed():
    """Two input-dependent token sequences along one dim: positions are there, not locatable."""
    x = torch.zeros(2, 3, 4, 4, requires_grad=True)
    lay.attach(x, lay.input_layout(x.shape))
    tokens, _ = follow(torch.Tensor.flatten, x, 2)
    out, layout = follow(torch.cat, [tokens, tokens], 2)
    assert layout[2] == ((lay.MIXED, 32, 1),)
    assert not lay.locatable(layout)
    assert lay.axes_in(layout, (2,), 2) == {H, W}


def test_assumed_layouts():
    assert lay.assumed((2, 3, 8), input_rank=3) == lay.input_layout((2, 3, 8))
    assert lay.assumed((2, 10), input_rank=4) == (((B, 2, 1),), ((None, 10, 1),))
    assert lay.assumed((2, 3, 4), input_rank=4) is None
