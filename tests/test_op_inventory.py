"""One op inventory: the ops with an rfarith rule, the ops with a probe surrogate, the neutral
ones, side by side; the test fails when the two sides drift apart.

Both tables are keyed by what user code reaches:

- the probe's ``rfnumeric.surrogates.TABLE`` by the callable ``TorchFunctionMode`` receives
  (``torch.erfc``, ``Tensor.erfc``, ``F.relu``; ``x + y`` arrives as ``Tensor.add``);
- rfarith's rule table (``rfarith.rules.registry.entries()``) by the fx target: a function
  (``torch.erfc``, ``operator.add``) or a tensor method name (``"erfc"``). Each is mapped to
  the callable the probe would receive for the same user code: ``Tensor.<name>`` for a method,
  and for ``operator.*`` and the dunder methods, the callable a recording mode sees when they
  run on sample tensors.

Then:

1. every op the probe has a surrogate for has an rfarith rule (or is listed in
   :data:`PROBE_ONLY` with the reason, or in :data:`ALIASES` with the rfarith entry that
   covers the same user code);
2. where both sides have the op, they treat it alike: the pairs of (probe handler, rfarith
   rule) are the ones in :data:`COUNTERPARTS` (a probe identity is an rfarith neutral op);
3. every rfarith rule for a function or method is either in the probe's table or listed in
   :data:`PROBE_RUNS_AS_IS` with the reason the probe needs no surrogate (or, for
   :data:`PROBE_GAPS`, what the probe is missing);
4. no list holds a stale entry.

Rules registered by qualified name (``registry.Named``: torchvision's ``stochastic_depth``,
MViT's helpers) are Python functions the probe runs through, op by op: not compared here.
Rules that tests register for their own functions are left out.
"""

from __future__ import annotations

import operator

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode

import rfnumeric.surrogates as probe
from rfarith.rules import registry

# ---- labels --------------------------------------------------------------------------------


def label(target) -> str:
    """A readable name for a callable of either table: 'torch.erfc', 'Tensor.erfc', 'F.relu',
    'operator.add', 'Tensor.T.__get__'."""
    if isinstance(target, str):
        return f"Tensor.{target}"
    name = getattr(target, "__name__", None)
    if name == "__get__":  # a property's getter: Tensor.T, Tensor.mT
        for attr in dir(torch.Tensor):
            descriptor = torch.Tensor.__dict__.get(attr) or getattr(torch._C.TensorBase, attr, None)
            if getattr(descriptor, "__get__", None) == target:
                return f"Tensor.{attr}.__get__"
    for prefix, owner in (("Tensor", torch.Tensor), ("F", F), ("torch", torch), ("torch.linalg", torch.linalg), ("operator", operator)):
        if name and getattr(owner, name, None) is target:
            return f"{prefix}.{name}"
    if name == "linalg_vector_norm":
        return "torch.linalg.vector_norm"
    if name and getattr(F, name.replace("log_sigmoid", "logsigmoid"), None) is target:
        return f"F.{name.replace('log_sigmoid', 'logsigmoid')}"
    return f"{getattr(target, '__module__', '?')}.{name}"


class _Recorder(TorchFunctionMode):
    def __init__(self) -> None:
        super().__init__()
        self.seen: list = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        self.seen.append(func)
        return func(*args, **(kwargs or {}))


def _received(call) -> object | None:
    """The first callable the probe's mode receives when ``call()`` runs."""
    recorder = _Recorder()
    try:
        with recorder:
            call()
    except Exception:
        pass
    return recorder.seen[0] if recorder.seen else None


def _sample_calls(fn):
    """``fn`` on fresh sample operands (made outside the recording: in-place ops may change them)."""
    y = torch.rand(2, 2) + 1
    for args in ((y.clone(), y), (y.clone(),), (y > 1.5, y > 1.5), (y > 1.5,), (y.clone(), 0)):
        yield lambda args=args: fn(*args)


def probe_keys(kind: str, target) -> tuple:
    """The callables the probe's table may be looked up with for this rfarith entry: for a
    method, ``Tensor.<name>`` and, for a dunder, what the probe's mode really receives when it
    runs (``x.__add__(y)`` arrives as ``Tensor.add``); for ``operator.*``, what it receives."""
    if kind == "method":
        method = getattr(torch.Tensor, target, None)
        if method is None:
            return ()
        if not target.startswith("__"):
            return (method,)
        received = _first_received(lambda *a: getattr(a[0], target)(*a[1:]))
        return (method,) if received is None or received is method else (method, received)
    if kind == "function" and getattr(target, "__module__", None) in ("_operator", "operator"):
        received = _first_received(target)
        return () if received is None else (received,)
    return (target,)


def _first_received(fn):
    for call in _sample_calls(fn):
        seen = _received(call)
        if seen is not None:
            return seen
    return None


# ---- the inventory -------------------------------------------------------------------------


_ENTRIES: list = []


def built_in(target, fn) -> bool:
    """A rule rfarith ships (not one a test or a user registered)."""
    return fn.__module__.startswith("rfarith.rules.") and not str(getattr(target, "__module__", "")).startswith("tests")


def rfarith_entries() -> list[tuple[str, object, str, tuple]]:
    """(kind, target, rule name, probe keys) for every built-in function and method rule."""
    if not _ENTRIES:
        for kind, target, fn in registry.entries():
            if kind in ("function", "method") and built_in(target, fn):
                _ENTRIES.append((kind, target, fn.__name__, probe_keys(kind, target)))
    return _ENTRIES


def in_table(keys: tuple) -> list:
    return [k for k in keys if k in probe.TABLE]


def covered_by_rfarith() -> set[int]:
    return {id(k) for *_, keys in rfarith_entries() for k in keys}


def inventory() -> list[dict]:
    """One row per op of either side: op, rfarith rule, probe handler, neutral (the rule is
    the elementwise one: unit m reads unit m of each operand)."""
    rows: dict[str, dict] = {}
    for _, target, rule_name, keys in rfarith_entries():
        found = in_table(keys)
        rows[label(target)] = {
            "op": label(target),
            "rule": rule_name,
            "handler": probe.TABLE[found[0]].__name__ if found else None,
        }
    covered = covered_by_rfarith()
    for key, handler in probe.TABLE.items():
        if id(key) not in covered:
            rows.setdefault(label(key), {"op": label(key), "rule": None, "handler": handler.__name__})
    for row in rows.values():
        row["neutral"] = row["rule"] == "elementwise"
    return sorted(rows.values(), key=lambda r: r["op"])


# ---- what the lists say --------------------------------------------------------------------

# (probe handler, rfarith rule) pairs that describe the same op alike.
COUNTERPARTS = {
    ("identity", "elementwise"),  # a pointwise op: unit m reads unit m
    ("mix", "elementwise"),  # a pointwise merge of operands
    ("cast", "elementwise"),
    ("batch_norm", "elementwise"),
    ("glu", "elementwise"),
    ("contiguous", "elementwise"),
    ("permutation", "permute"),
    ("permutation", "transpose"),
    ("permutation", "movedim"),
    ("permutation", "matrix_transpose"),
    ("flatten", "reshape"),
    ("conv", "conv"),
    ("conv", "conv_transpose"),
    ("linear", "linear"),
    ("bilinear", "bilinear"),
    ("matmul", "matmul"),
    ("matmul", "einsum"),
    ("matmul", "add_matmul"),
    ("cat", "concatenate"),
    ("max_pool", "pool"),
    ("avg_pool", "pool"),
    ("lp_pool", "pool"),
    ("max_unpool", "max_unpool"),
    ("adaptive_pool", "adaptive_pool"),
    ("pad", "pad"),
    ("resize", "interpolate"),
    ("reduction", "reduction"),
    ("softmax", "softmax"),
    ("cumulative", "cumulative"),
    ("group_norm", "spatial_norm"),
    ("instance_norm", "spatial_norm"),
    ("layer_norm", "layer_norm"),
    ("normalize", "normalize"),
    ("attention", "scaled_dot_product_attention"),
}

# Probe surrogates of ops that reach rfarith as another entry of its table.
ALIASES = {
    "F.multi_head_attention_forward": ("module", nn.MultiheadAttention),  # nn.MultiheadAttention calls it
    "Tensor.T.__get__": ("function", getattr),  # fx traces x.T as getattr(x, "T")
    "Tensor.mT.__get__": ("function", getattr),
    "torch.lstm": ("module", nn.LSTM),  # nn.LSTM / GRU / RNN call them (torch._VF)
    "torch.gru": ("module", nn.GRU),
    "torch.rnn_tanh": ("module", nn.RNN),
    "torch.rnn_relu": ("module", nn.RNN),
}

# Probe surrogates whose op rfarith refuses too, and why.
PROBE_ONLY = {
    # integer inputs: an embedding reads indices, not an image; both sides refuse
    "torch.embedding": "integer input",
    "torch.embedding_bag": "integer input",
    "F.embedding": "integer input",
    "F.embedding_bag": "integer input",
    "F.one_hot": "integer input",
    # a cast to an integer type cuts the gradient; the probe refuses, rfarith has no rule
    "Tensor.long": "integer cast",
    "Tensor.int": "integer cast",
    "Tensor.short": "integer cast",
    "Tensor.char": "integer cast",
    "Tensor.byte": "integer cast",
}

# rfarith rules of ops the probe runs as they are (no surrogate needed), by reason.
PROBE_RUNS_AS_IS: dict[str, tuple[str, ...]] = {
    "moves, picks or tiles units: autograd of the op itself is its exact index map": (
        "F.pixel_shuffle", "F.pixel_unshuffle", "F.channel_shuffle", "F.native_channel_shuffle",
        "Tensor.broadcast_to", "torch.broadcast_to", "Tensor.expand", "Tensor.expand_as",
        "Tensor.chunk", "torch.chunk", "Tensor.split", "torch.split", "Tensor.tensor_split",
        "torch.tensor_split", "Tensor.unbind", "torch.unbind", "Tensor.narrow", "torch.narrow",
        "Tensor.select", "torch.select", "Tensor.repeat", "Tensor.tile", "torch.tile",
        "Tensor.squeeze", "Tensor.squeeze_", "torch.squeeze", "Tensor.unsqueeze",
        "Tensor.unsqueeze_", "torch.unsqueeze", "Tensor.unflatten", "torch.unflatten",
        "Tensor.view_as", "Tensor.reshape_as", "Tensor.transpose_", "torch.stack",
        "operator.getitem", "Tensor.roll", "torch.roll", "F.unfold", "Tensor.repeat_interleave",
        "torch.repeat_interleave", "F.fold", "Tensor.unfold",
        # x.T / x.mT reach the probe as Tensor.T.__get__ / Tensor.mT.__get__ (surrogates);
        # other attributes (x.data) run as they are
        "builtins.getattr",
    ),
    "a copy or a move between devices: gradient 1 everywhere": (
        "Tensor.clone", "Tensor.cpu", "Tensor.cuda", "Tensor.requires_grad_", "Tensor.type_as",
    ),
    "a power: gradient p*x^(p-1), non-zero on the probe's positive input": (
        "operator.pow", "Tensor.__pow__",
    ),
    "reads the shape only: no gradient, and no field in rfarith": (
        "Tensor.dim", "Tensor.numel", "Tensor.size", "Tensor.new_empty", "Tensor.new_full",
        "Tensor.new_ones", "Tensor.new_tensor", "Tensor.new_zeros", "torch.empty_like",
        "torch.full_like", "torch.ones_like", "torch.rand_like", "torch.randn_like",
        "torch.zeros_like",
    ),
    # A boolean or integer result carries no gradient: the probe cannot follow it (a mask from
    # one branch gating another is lost on the probe's side), rfarith follows the operands.
    "a boolean or integer result: no gradient to follow": (
        "Tensor.eq", "Tensor.ne", "Tensor.gt", "Tensor.ge", "Tensor.lt", "Tensor.le", "torch.eq",
        "torch.ne", "torch.gt", "torch.ge", "torch.lt", "torch.le", "operator.eq", "operator.ne",
        "operator.gt", "operator.ge", "operator.lt", "operator.le", "torch.logical_and",
        "torch.logical_or", "operator.and_", "operator.or_", "operator.xor", "operator.invert",
        "Tensor.any", "Tensor.all", "torch.any", "torch.all", "Tensor.count_nonzero",
        "torch.count_nonzero",
    ),
}  # fmt: skip

# rfarith rules of ops the probe handles differently, for rfnumeric to fix (empty when in sync).
PROBE_GAPS: dict[str, str] = {
    "operator.floordiv": "x // 2 reaches the probe as Tensor.__floordiv__, which has no surrogate "
    "(floor_divide has one): the probe's forward fails ('derivative for aten::floor_divide is "
    "not implemented') where rfarith follows the operands",
    "Tensor.__floordiv__": "as operator.floordiv",
}


# ---- the checks ----------------------------------------------------------------------------


def test_every_probe_surrogate_has_an_rfarith_rule():
    covered = covered_by_rfarith()
    missing = []
    for key, handler in probe.TABLE.items():
        name = label(key)
        if id(key) in covered or name in PROBE_ONLY:
            continue
        if name in ALIASES:
            kind, target = ALIASES[name]
            assert any(k == kind and t is target for k, t, _ in registry.entries()), f"{name} is an alias of {target}, which has no rule"
            continue
        missing.append(f"{name} (probe: {handler.__name__})")
    assert not missing, "ops the probe has a surrogate for but rfarith no rule: " + ", ".join(sorted(missing))


def test_both_sides_treat_an_op_alike():
    unlike = [
        f"{r['op']}: probe {r['handler']} vs rfarith {r['rule']}"
        for r in inventory()
        if r["rule"] is not None and r["handler"] is not None and (r["handler"], r["rule"]) not in COUNTERPARTS
    ]
    assert not unlike, "ops the two sides treat differently: " + "; ".join(unlike)


def test_every_rfarith_rule_is_known_to_the_probe():
    listed = {name for names in PROBE_RUNS_AS_IS.values() for name in names} | set(PROBE_GAPS)
    unknown = sorted(f"{label(t)} ({rule})" for _, t, rule, keys in rfarith_entries() if not in_table(keys) and label(t) not in listed)
    assert not unknown, "rfarith rules the probe has no surrogate for and no list explains: " + ", ".join(unknown)


def test_no_stale_entries():
    keys_of = {label(t): keys for _, t, _, keys in rfarith_entries()}
    table = {label(k) for k in probe.TABLE}
    stale = [n for n in PROBE_ONLY if n not in table]
    stale += [n for n in ALIASES if n not in table]
    runs_as_is = [n for names in PROBE_RUNS_AS_IS.values() for n in names]
    stale += [n for n in [*runs_as_is, *PROBE_GAPS] if n not in keys_of or in_table(keys_of[n])]
    covered = covered_by_rfarith()
    stale += [n for n in [*PROBE_ONLY, *ALIASES] if any(id(k) in covered for k in probe.TABLE if label(k) == n)]
    assert not stale, "stale inventory entries (fixed on one side? take them off the list): " + ", ".join(sorted(stale))


@pytest.mark.parametrize("name", ["log2", "tan", "cosh", "logit", "erfc", "frac"])
def test_the_ops_the_issue_named_are_neutral_on_both_sides(name):
    rows = {r["op"]: r for r in inventory()}
    for owner in ("torch", "Tensor"):
        row = rows[f"{owner}.{name}"]
        assert row["rule"] == "elementwise" and row["handler"] == "identity", row
