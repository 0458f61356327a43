"""The index map of ``F.interpolate`` / ``nn.Upsample`` along one axis, exactly as PyTorch runs it.

Derivation (scale ``a/b`` = input units per output unit, reduced): 'nearest' reads unit
``floor(m*a/b)``, 'nearest-exact' ``floor((m + 1/2)*a/b)``; the linear modes read ``floor(x)``
and ``floor(x)+1`` unless x is an integer (the second weight is then exactly 0), with
``x = (m + 1/2)*a/b - 1/2``, or ``x = m*(n_in-1)/(n_out-1)`` with ``align_corners``; 'bicubic'
reads ``floor(x)-1 .. floor(x)+2`` (only ``x`` itself when x is an integer: the other weights are
exactly 0). ``m + b`` reads ``a`` units further, so the period is b. The scale is
``1/scale_factor`` when one is given (and not recomputed), else ``n_in/n_out``. At the borders
PyTorch clamps source indices into the map: padding units copy the edge unit ('replicate').

PyTorch computes ``x`` in floating point; for ratios that are not exact in binary (a size-based
resize 13 -> 37, say) it can round a unit onto its neighbour's source. So the exact rational map
is checked against the map PyTorch really uses, read off one small run of the op on index
patterns in the model's dtype; where they differ, PyTorch's own map is used unit by unit.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from fractions import Fraction

import torch
import torch.nn.functional as F

from .. import axisfield as af

RESIDUES = 7  # distinct source residues needed to tell apart up to 4 consecutive taps +- rounding


@dataclass(frozen=True)
class AxisResize:
    """One axis of one interpolate call."""

    mode: str
    align_corners: bool
    scale_factor: float | None
    recompute: bool
    dtype: torch.dtype
    nd: int
    axis: int

    @property
    def linear(self) -> bool:
        return not self.mode.startswith("nearest")

    def scale(self, n_in: int, n_out: int) -> Fraction:
        if self.align_corners and self.linear:
            return Fraction(n_in - 1, n_out - 1) if n_out > 1 else Fraction(0)
        if self.scale_factor is not None and not self.recompute:
            return 1 / Fraction(self.scale_factor).limit_denominator(1 << 16)
        return Fraction(n_in, n_out)

    def position(self, m: int, scale: Fraction) -> Fraction:
        if self.mode == "nearest" or (self.align_corners and self.linear):
            return m * scale
        if self.mode == "nearest-exact":
            return (m + Fraction(1, 2)) * scale
        return (m + Fraction(1, 2)) * scale - Fraction(1, 2)

    def taps(self, x: Fraction) -> tuple[int, ...]:
        i0 = math.floor(x)
        if not self.linear or x == i0:
            return (i0,)
        if self.mode == "bicubic":
            return (i0 - 1, i0, i0 + 1, i0 + 2)
        return (i0, i0 + 1)

    def rational(self, n_in: int, n_out: int) -> tuple[int, int, tuple[tuple[int, ...], ...]]:
        """(period b, shift a, sources per phase) of the exact map."""
        scale = self.scale(n_in, n_out)
        a, b = scale.numerator, scale.denominator
        return b, a, tuple(self.taps(self.position(p, scale)) for p in range(b))

    def actual(self, n_in: int, n_out: int) -> list[tuple[int, ...]]:
        """Source units of every output unit as PyTorch computes them (one run on index patterns)."""
        index = torch.arange(n_in)
        shape = [RESIDUES, 1] + [1] * self.nd
        shape[2 + self.axis] = n_in
        view = [1] * (self.nd + 2)
        view[2 + self.axis] = n_in
        patterns = (index.remainder(RESIDUES) == torch.arange(RESIDUES).view(-1, 1)).to(self.dtype)
        patterns = patterns.view(RESIDUES, 1, *view[2:]).expand(*shape)
        kwargs = {"mode": self.mode}
        if self.scale_factor is not None and not self.recompute:
            factors = [1.0] * self.nd
            factors[self.axis] = float(self.scale_factor)
            kwargs["scale_factor"] = tuple(factors)
        else:
            sizes = [1] * self.nd
            sizes[self.axis] = n_out
            kwargs["size"] = tuple(sizes)
            if self.scale_factor is not None:
                factors = [1.0] * self.nd
                factors[self.axis] = float(self.scale_factor)
                kwargs = {"mode": self.mode, "scale_factor": tuple(factors), "recompute_scale_factor": True}
        if self.linear:
            kwargs["align_corners"] = self.align_corners
        out = F.interpolate(patterns.contiguous(), **kwargs).reshape(RESIDUES, -1)
        scale = self.scale(n_in, n_out)
        sources = []
        for m in range(n_out):
            guess = min(max(math.floor(self.position(m, scale)), 0), n_in - 1)
            window = range(max(guess - 3, 0), min(guess + 4, n_in))
            sources.append(tuple(i for i in window if out[i % RESIDUES, m] != 0))
        return sources

    @functools.lru_cache(maxsize=64)  # noqa: B019  (frozen, hashable, a handful per model)
    def index_map(self, n_in: int, n_out: int) -> tuple[int, int, tuple[tuple[int, ...], ...], bool]:
        """(period, shift, sources per phase, exact): the rational map if PyTorch follows it
        (``exact``), else PyTorch's own map unit by unit, with the map's length as period."""
        period, shift, sources = self.rational(n_in, n_out)
        actual = self.actual(n_in, n_out)

        def clamped(m: int) -> tuple[int, ...]:
            q, p = divmod(m, period)
            return tuple(sorted({min(max(q * shift + o, 0), n_in - 1) for o in sources[p]}))

        if all(clamped(m) == actual[m] for m in range(n_out)):
            return period, shift, sources, True
        return n_out, n_in, tuple(actual), False  # floating-point rounding broke the period

    def rounds(self, n_in: int, n_out: int) -> bool:
        """Whether PyTorch's float rounding moves some unit off the exact rational map (the
        field then follows PyTorch unit by unit and has no period shorter than the map)."""
        return n_in > 1 and not self.index_map(n_in, n_out)[3]

    def field_map(self, field: af.AxisField, n_in: int, n_out: int, _extent: int) -> af.AxisField:
        if n_in == 1:  # every output unit reads the one input unit (clamped): no lattice at all
            return af.constant(field.real(0), n_out)
        period, shift, sources, _ = self.index_map(n_in, n_out)
        return af.resample(field, period, shift, sources, n_out, border="replicate")
