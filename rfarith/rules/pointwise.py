"""Elementwise ops and merges: unit m of the output sees what unit m of every input sees.

The neutral list is explicit: only the ops below pass a field through unchanged. Binary ops
(``add``, ``mul``, ``sub``, ``where``, ...) merge with the exact hull rule. An input broadcast
from one unit (a squeeze-excite gate, a global statistic) is a global side path: it does not
widen the local field and adds the flag ``global`` with the node that caused it.
"""

from __future__ import annotations

import operator
from fractions import Fraction

import torch
import torch.nn.functional as F
from torch import nn

from .. import axisfield as af
from ..errors import UnsupportedOp
from ..field import axis_names
from ..value import Dim, Term, Value, _dedupe, axis_units, pruned
from .registry import Call, Named, rule


def _existing(names: tuple[str, ...], owners: tuple = (torch, F)) -> tuple:
    """Every ``torch.<name>`` / ``F.<name>`` of ``names`` that exists in this torch, each once."""
    found: dict = {}
    for name in names:
        for owner in owners:
            fn = getattr(owner, name, None)
            if callable(fn):
                found[fn] = None
    return tuple(found)


def _methods(names: tuple[str, ...]) -> tuple[str, ...]:
    """The names of ``names`` that are tensor methods in this torch."""
    return tuple(n for n in names if callable(getattr(torch.Tensor, n, None)))


# Pointwise ops by name (activations, math, in-place forms, dropout): unit m of the output is a
# function of unit m of the input, so every one passes the field through. Listed by name once;
# the torch functions, F functions and tensor methods of that name are all neutral.
POINTWISE_NAMES: tuple[str, ...] = (
    "celu", "celu_", "selu", "selu_", "rrelu", "rrelu_", "threshold", "threshold_", "prelu", "XX",
    "hardshrink", "relu_", "sigmoid_", "tanh_", "elu_", "leaky_relu_",
    "abs_", "absolute", "absolute_", "asinh", "asinh_", "atan", "atan_", "ceil_", "clamp_",
    "clamp_max_", "clamp_min_", "clip_", "cos_", "cosh", "cosh_", "erf_", "erfc", "erfc_", "exp2",
    "exp2_", "exp_", "expm1_", "fix", "fix_", "floor_", "frac", "frac_", "log10", "log10_",
    "log1p_", "log2", "log2_", "log_", "logit", "logit_", "nan_to_num_", "neg_", "negative",
    "negative_", "positive", "reciprocal_", "round_", "rsqrt_", "sgn", "sgn_", "sign_", "sin_",
    "sinh", "sinh_", "sqrt_", "square_", "tan", "tan_", "trunc_", "detach", "detach_",
    "dropout_", "alpha_dropout_", "feature_alpha_dropout", "feature_alpha_dropout_",
    "feature_dropout", "feature_dropout_",
)  # fmt: skip

NEUTRAL_MODULES: tuple[type[nn.Module], ...] = (
    nn.Identity,
    nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.PReLU, nn.RReLU, nn.ELU, nn.SELU, nn.CELU, nn.GELU,
    nn.SiLU, nn.Mish, nn.Sigmoid, nn.Tanh, nn.Hardswish, nn.Hardsigmoid, nn.Hardtanh,
    nn.Softplus, nn.Softsign, nn.Softshrink, nn.Hardshrink, nn.Tanhshrink, nn.Threshold,
    nn.LogSigmoid, nn.GLU,
    nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout, nn.FeatureAlphaDropout,
    # eval-mode BatchNorm is a per-channel affine map; rfarith analyses the model as in eval mode
    nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm,
    nn.LazyBatchNorm1d, nn.LazyBatchNorm2d, nn.LazyBatchNorm3d,
    nn.LocalResponseNorm, nn.ChannelShuffle,
)

# Ops whose output has the shape and dtype of their first input: the walk skips running them.
SAME_SHAPE_MODULES: tuple[type[nn.Module], ...] = ()  # filled below from NEUTRAL_MODULES

NEUTRAL_FUNCTIONS: tuple = (
    F.relu, F.relu_, F.relu6, F.leaky_relu, F.leaky_relu_, F.prelu, F.rrelu, F.elu, F.elu_,
    F.selu, F.celu, F.gelu, F.silu, F.mish, F.hardswish, F.hardsigmoid, F.hardtanh, F.hardtanh_,
    F.softplus, F.softsign, F.softshrink, F.hardshrink, F.tanhshrink, F.threshold, F.logsigmoid,
    F.glu, F.sigmoid, F.tanh,
    F.dropout, F.dropout1d, F.dropout2d, F.dropout3d, F.alpha_dropout, F.feature_alpha_dropout,
    F.batch_norm, F.local_response_norm, F.channel_shuffle,
    torch.relu, torch.relu_, torch.sigmoid, torch.tanh, torch.exp, torch.log, torch.sqrt,
    torch.rsqrt, torch.abs, torch.neg, torch.square, torch.sign, torch.clamp, torch.clip,
    torch.clamp_min, torch.clamp_max, torch.erf, torch.sin, torch.cos, torch.reciprocal,
    torch.log1p, torch.expm1, torch.floor, torch.ceil, torch.round, torch.trunc,
    torch.nan_to_num, torch.dropout, torch.batch_norm, torch.channel_shuffle,
    torch.native_channel_shuffle, torch.alpha_dropout,
    operator.neg, operator.pos, operator.abs, operator.invert,
)
NEUTRAL_FUNCTIONS += tuple(f for f in _existing(POINTWISE_NAMES) if f not in NEUTRAL_FUNCTIONS)

SAME_SHAPE_MODULES = tuple(m for m in NEUTRAL_MODULES if m is not nn.GLU)
SAME_SHAPE_FUNCTIONS = frozenset(
    f for f in NEUTRAL_FUNCTIONS
    if f not in (F.glu, F.prelu, F.dropout, F.batch_norm, torch.batch_norm, torch.dropout)
)

NEUTRAL_METHODS: tuple[str, ...] = (
    "relu", "relu_", "sigmoid", "sigmoid_", "tanh", "tanh_", "exp", "log", "sqrt", "rsqrt", "abs",
    "neg", "square", "sign", "clamp", "clamp_", "clip", "clamp_min", "clamp_max", "erf", "sin",
    "cos", "reciprocal", "log1p", "expm1", "floor", "ceil", "round", "trunc", "nan_to_num",
    "contiguous", "clone", "detach", "float", "double", "half", "bfloat16", "to", "type",
    "type_as", "cpu", "cuda", "requires_grad_", "__neg__", "__abs__",
    "pow_", "mul_", "div_", "add_", "sub_",
)
NEUTRAL_METHODS += tuple(n for n in _methods(POINTWISE_NAMES) if n not in NEUTRAL_METHODS)

# Functions of packages rfarith does not import, matched by qualified name (registry.Named).
# torchvision.ops.stochastic_depth(input, p, mode, training): ``input`` itself in eval (or with
# p = 0); in training ``input * noise``, noise one Bernoulli draw / (1 - p) per sample ('row',
# shape (N, 1, ..., 1)) or per batch ('batch'), drawn without reading the input: a scale every
# unit of a sample shares. Unit m of the output sees what unit m of the input sees either way.
NEUTRAL_NAMED: tuple[Named, ...] = (Named("torchvision.ops.stochastic_depth.stochastic_depth"),)

BINARY_FUNCTIONS: tuple = (
    operator.add, operator.sub, operator.mul, operator.truediv, operator.floordiv, operator.pow,
    operator.mod, operator.iadd, operator.isub, operator.imul, operator.itruediv,
    torch.add, torch.sub, torch.subtract, torch.mul, torch.multiply, torch.div, torch.divide,
    torch.true_divide, torch.pow, torch.maximum, torch.minimum, torch.fmax, torch.fmin,
    torch.where, torch.lerp, torch.addcmul, torch.addcdiv, torch.hypot, torch.atan2,
    torch.rsub, torch.fmod, torch.remainder, torch.eq, torch.ne, torch.gt, torch.ge, torch.lt,
    torch.le, torch.logical_and, torch.logical_or, torch.masked_fill,
    operator.gt, operator.ge, operator.lt, operator.le, operator.eq, operator.ne,
    operator.and_, operator.or_, operator.xor,
)

BINARY_METHODS: tuple[str, ...] = (
    "add", "sub", "mul", "div", "pow", "maximum", "minimum", "where", "lerp", "addcmul",
    "addcdiv", "masked_fill", "masked_fill_", "__add__", "__radd__", "__sub__", "__rsub__",
    "__mul__", "__rmul__", "__truediv__", "__rtruediv__", "__pow__", "__rpow__",
    "fmod", "remainder", "eq", "ne", "gt", "ge", "lt", "le",
)

# More binary pointwise ops by name (unit m of the output reads unit m of each operand).
BINARY_NAMES: tuple[str, ...] = (
    "arctan2", "atan2", "atan2_", "copysign", "copysign_", "divide", "divide_", "float_power",
    "float_power_", "floor_divide", "floor_divide_", "fmax", "fmin", "fmod_", "hypot", "hypot_",
    "lerp_", "logaddexp", "logaddexp2", "multiply", "multiply_", "remainder_", "subtract",
    "subtract_", "true_divide", "true_divide_", "xlogy", "addcdiv_", "addcmul_", "__iadd__",
    "__isub__", "__imul__", "__idiv__", "__itruediv__", "__rdiv__", "__rfloordiv__",
    "__floordiv__", "__rmod__", "__mod__",
)  # fmt: skip
BINARY_FUNCTIONS += tuple(f for f in _existing(BINARY_NAMES, (torch,)) if f not in BINARY_FUNCTIONS)
BINARY_METHODS += tuple(n for n in _methods(BINARY_NAMES) if n not in BINARY_METHODS)


def _aligned_dim(value: Value, tensor_rank: int, out_rank: int, out_dim: int) -> Dim | None:
    """The dim of an input that lines up with ``out_dim`` under broadcasting (None: absent)."""
    dim = out_dim - (out_rank - tensor_rank)
    return value.dims[dim] if dim >= 0 else None


def merge(call: Call, inputs: list[tuple[torch.Size, Value]], out_shape: tuple[int, ...]) -> Value:
    """Exact hull of the inputs' fields, unit by unit, with NumPy-style broadcasting."""
    out_rank = len(out_shape)
    n_axes = len(inputs[0][1].n)
    dims: list[Dim] = []
    for d, size in enumerate(out_shape):
        chosen: Dim | None = None
        for shape, value in inputs:
            dim = _aligned_dim(value, len(shape), out_rank, d)
            if dim is None or not any(a is not None for a, _ in dim):
                continue
            in_size = shape[d - (out_rank - len(shape))]
            if in_size != size:
                continue  # broadcast along this dim
            if chosen is not None and chosen != dim:
                raise UnsupportedOp(call.node, call.op, f"it combines different spatial layouts {chosen} and {dim} in dim {d}")
            chosen = dim
        dims.append(chosen if chosen is not None else (((None, size),) if size != 1 else ()))

    n_out = [1 if u is None else u for u in axis_units(dims, n_axes)]  # a split axis: product of its parts
    for _, value in inputs:  # axes no dim carries (reduced away) keep their unit count
        for a in range(n_axes):
            if all(a not in (f for f, _ in dim) for dim in dims):
                n_out[a] = max(n_out[a], value.n[a])

    return merged(call, dims, [value for _, value in inputs], tuple(n_out))


def merged(call: Call, dims, values: list[Value], n_out: tuple[int, ...]) -> Value:
    """The Value with layout ``dims`` whose unit m sees what unit m of every value sees.

    A value broadcast from one unit, or one whose field is already global, is a side path: it
    only counts when no local path is left, and it adds the flag global with its cause. Local
    fields centred differently make the merge ``misaligned`` (exact all the same).
    """
    via: tuple[str, ...] = ()
    flags: set[str] = set()
    local_terms: list[Term] = []
    side_terms: list[Term] = []
    local_values: list[Value] = []
    for value in values:
        via += value.global_via
        flags |= value.flags
        has_local = False
        for term in value.terms:
            fields = []
            side = False
            for a, field in enumerate(term):
                if field.n != n_out[a]:  # broadcast from one unit: every unit sees the same pixels
                    field = af.constant(field.real(0), n_out[a])
                # a side path: a field every unit sees alike that a global reduction made (a map
                # of one unit that local ops made stays a local term: the probe follows it too)
                side = side or (field.is_global and bool(value.global_via))
                fields.append(field)
            (side_terms if side else local_terms).append(tuple(fields))
            has_local = has_local or not side
        if has_local:
            local_values.append(value)
    terms, approximate = pruned(local_terms or side_terms)
    flags |= approximate
    for a, name in enumerate(axis_names(len(n_out))):
        steps = {Fraction(t[a].jump, t[a].period) for t in terms if t[a].steps}
        if len(steps) > 1:
            raise UnsupportedOp(
                call.node, call.op,
                f"it merges feature maps whose units step differently along axis {name} "
                f"(j = {', '.join(str(s) for s in sorted(steps))})",
            )
        if len(local_values) > 1 and not af.same_centres([v.fields[a] for v in local_values]):
            flags.add("misaligned")
    return Value(tuple(dims), terms, values[0].extent, _dedupe(via), frozenset(flags))


def elementwise(call: Call):
    inputs = [(t.shape, v) for t, v in call.tensors() if v is not None]
    out = merge(call, inputs, call.out_shape)
    return (out,) * len(call.out) if isinstance(call.out, tuple) else out


rule(*NEUTRAL_MODULES, *NEUTRAL_FUNCTIONS, *NEUTRAL_METHODS, *NEUTRAL_NAMED, *BINARY_FUNCTIONS, *BINARY_METHODS)(elementwise)
