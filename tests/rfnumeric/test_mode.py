"""The probe's function mode: NaN / Inf named where they appear, retries the slow way when the
fast way cannot be exact, and nothing of it leaks into the user's world."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import rfarith
import rfnumeric
from tests.rfnumeric import nets


class NaNBackward(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        return x * 1.0

    @staticmethod
    def backward(ctx, grad):
        return grad * float("nan")


class BadBackward(nn.Module):
    def forward(self, x):
        return NaNBackward.apply(x)


class InfForward(nn.Module):
    def forward(self, x):
        return torch.special.logit(x)  # logit(1) = inf; nothing the probe replaces


def test_inf_in_the_forward_names_the_module():
    model = nn.Sequential(nn.Conv2d(1, 2, 3), InfForward(), nn.Conv2d(2, 2, 3))
    with pytest.raises(rfarith.ProbeError, match=r"produces Inf first at '1' \(InfForward\)"):
        rfnumeric.probe(model, (1, 1, 16, 16))


def test_nan_in_the_backward_names_where_it_comes_from():
    model = nn.Sequential()
    model.add_module("stem", nn.Conv2d(1, 2, 3))
    model.add_module("bad", BadBackward())
    model.add_module("head", nn.Conv2d(2, 2, 3))
    with pytest.raises(
        rfarith.ProbeError, match=r"NaN or Inf appears in the gradient of 'stem'.*backward of bad"
    ):
        rfnumeric.probe(model, (1, 1, 16, 16))


def test_nan_with_real_weights_names_the_layer():
    class Log(nn.Module):
        def forward(self, x):
            return torch.log(x - 10)  # the real model makes NaN for an input of ones

    model = nn.Sequential(nn.Conv2d(1, 1, 1), Log())
    with pytest.raises(rfarith.ProbeError, match=r"NaN first at '1' \(Log\).*model itself"):
        rfnumeric.probe(model, (1, 1, 8, 8), weights="real")


def test_a_model_that_mixes_the_batch_is_probed_one_unit_at_a_time():
    p = rfnumeric.probe(nets.BatchMean().eval(), (1, 1, 16, 16))
    assert p.r == (3, 3) and p.j == (1, 1) and p.flags == frozenset()


def test_a_model_that_hard_codes_the_batch_size_still_works():
    class Fixed(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(1, 2, 3)

        def forward(self, x):
            y = self.conv(x)
            return y.view(1, 2, y.shape[2], y.shape[3])

    assert rfnumeric.probe(Fixed().eval(), (1, 1, 16, 16)).r == (3, 3)


class Tokens(nn.Module):
    """A sequence model: token ids (batch, 1, length) -> embeddings -> 1-D convolution."""

    def __init__(self, cast: bool = False) -> None:
        super().__init__()
        self.cast = cast
        self.embed = nn.Embedding(10, 4)
        self.conv = nn.Conv1d(4, 4, 3)

    def forward(self, x):
        ids = x.long() if self.cast else x
        return self.conv(self.embed(ids[:, 0]).transpose(1, 2))


def test_a_model_expecting_integer_inputs_is_refused_clearly():
    with pytest.raises(
        rfarith.ProbeError, match=r"reads its input as integer indices \(embedding at 'embed'"
    ):
        rfnumeric.probe(Tokens(), (1, 1, 16))


def test_an_integer_cast_of_the_input_is_refused_clearly():
    with pytest.raises(rfarith.ProbeError, match=r"converts input-dependent values to torch.int64"):
        rfnumeric.probe(Tokens(cast=True), (1, 1, 16))


def test_user_float32_casts_stay_float64():
    class Casting(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(1, 1, 3)

        def forward(self, x):
            return self.conv(x.float()).half().float()

    assert rfnumeric.probe(Casting(), (1, 1, 16, 16)).r == (3, 3)


def test_the_probe_leaves_global_state_alone():
    grad_enabled = torch.is_grad_enabled()
    default = torch.get_default_dtype()
    with torch.no_grad():
        p = rfnumeric.probe(nn.Conv2d(1, 1, 3), (1, 1, 8, 8))  # works under no_grad too
    assert p.r == (3, 3)
    assert torch.is_grad_enabled() == grad_enabled and torch.get_default_dtype() == default
    assert not torch.overrides._get_current_function_mode_stack()


@pytest.mark.parametrize(
    "values, finite",
    [
        ([1.0, 2.0], True),
        ([1e308, 1e308], True),  # the sum overflows; every element is still finite
        ([1.0, float("nan")], False),
        ([float("inf"), 1.0], False),
        ([float("inf"), float("-inf")], False),
        ([], True),
    ],
)
def test_all_finite_reads_elements_not_their_sum(values, finite):
    from rfnumeric.mode import all_finite

    assert all_finite(torch.tensor(values, dtype=torch.float64)) is finite
