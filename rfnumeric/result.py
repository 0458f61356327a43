"""The records the probe returns: :class:`ProbeResult` and :class:`EffectiveField`."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from fractions import Fraction
from types import MappingProxyType

import numpy as np

FLAG_ORDER = ("global", "holes", "misaligned", "nonuniform", "clipped", "underflow")
# how a note of ProbeResult.notes begins: no single jump (flag nonuniform), or a field cut by the
# border of an input the model does not let grow (flag clipped)
JUMP_NOTE = "no single jump"
CUT_NOTE = "cut by the border"


def describe_flags(
    flags: frozenset[str], global_via: tuple[str, ...], notes: tuple[str, ...] = ()
) -> str:
    """Flags as one string, in rfarith's order and format: ``global (via se.pool), holes``.
    ``notes`` (:attr:`ProbeResult.notes`) follow their flag in parentheses: why an axis has no
    single jump after ``nonuniform``, why a field is cut after ``clipped``."""
    by_flag = {
        "nonuniform": [n for n in notes if n.startswith(JUMP_NOTE)],
        "clipped": [n for n in notes if n.startswith(CUT_NOTE)],
    }
    parts = []
    for flag in FLAG_ORDER:
        if flag not in flags:
            continue
        if flag == "global" and global_via:
            more = f", +{len(global_via) - 1} more" if len(global_via) > 1 else ""
            parts.append(f"global (via {global_via[0]}{more})")
        elif by_flag.get(flag):
            parts.append(f"{flag} ({'; '.join(by_flag[flag])})")
        else:
            parts.append(flag)
    return ", ".join(parts)


@dataclass(frozen=True, eq=False)
class ProbeResult:
    """What the gradient probe measured for one unit of one feature map.

    Per-axis tuples follow rfcheck's conventions (pixel ``i`` spans ``[i, i+1)``), so they
    compare directly with :class:`rfarith.ReceptiveField`:

    - ``node``: the probed node; ``axes``: axis names ('l'; 'h', 'w'; 'd', 'h', 'w').
    - ``unit``: the probed unit's index on the probed map (the centre unit unless one was asked).
    - ``n``: the map's size at the input the probe ran (``input_shape``, which the probe may
      have grown so that the field fits).
    - ``r``: field size (first to last pixel seen, holes included), the largest over the units
      of one period; ``j``: jump between adjacent units' fields (an ``int``, a ``Fraction``
      after upsampling, ``0`` for a global axis, NaN when the map has one unit whatever the
      input size, and NaN with ``r`` and ``start`` where no single jump reproduces the units
      measured: see ``notes``); ``start``: centre of unit 0's field, ``(lo0 + hi0 + 1) / 2`` with
      ``lo0 = lo(m) - m*j``. A global axis reads ``r`` = the size ``input_shape`` had when the
      call was made, ``j = 0``, ``start = r / 2``, as rfarith reports it.
    - ``bounds``: first and last input pixel the probed unit sees, per axis (measured, so
      clipped to the input for a unit at the border: then flag ``clipped``).
    - ``support``: per axis, the pixels the probed unit sees (projection of its N-D support:
      exactly the non-zero input gradient, no threshold); ``heatmap``: ``|input gradient|``
      summed over channels, over the input's spatial axes.
    - ``flags``: ``global`` (some path reaching the unit passes a global spatial reduction;
      ``global_via`` names them when known), ``holes`` (a pixel inside the box a unit's
      support spans gets no gradient: a gap along an axis, or corners that factorised 1xn /
      nx1 branches leave unseen), ``nonuniform`` (sizes differ between adjacent units, or the
      spacing has no period the probe can find), ``clipped`` (the probed unit's
      support touches the input border, or the field is cut: see ``growth_refused``), ``underflow`` (gradients came within reach of
      float64's smallest numbers: the structural probe compresses them so the support stays
      exact, but the heatmap's magnitudes are not gradients any more; with ``weights='real'``
      nothing is changed and the support may miss pixels whose gradient underflowed).
    - ``notes``: per axis whose units no single jump reproduces, why (``'no single jump along
      w: unit 1 sees 0..5, but j 1, r 5, start 2.5 put it at 1..5'``). The probe never reports a
      summary that contradicts a unit it measured: along such an axis ``j``, ``r`` and
      ``start`` are NaN, the flag ``nonuniform`` is set and :meth:`describe_flags` shows the
      note; ``bounds``, ``support`` and ``measured`` still hold what each unit sees.
    - ``growth_refused``: empty unless the field does not fit and the model rejected every
      larger input the probe tried (a model that accepts one input size): the field is then
      read at the largest input it accepted (``input_shape``), and along each axis where it is
      cut by the border ``j``, ``r``, ``start`` are NaN with a note (``'cut by the border along
      h: ...'``), while ``bounds``, ``support`` and ``measured`` hold exactly what the units see
      of that input. The text says why (the model's own error).
    - ``mode`` ('local' or 'full', the mode the answer was measured in) and ``weights``.
    """

    node: str
    axes: tuple[str, ...]
    unit: tuple[int, ...]
    n: tuple[int, ...]
    r: tuple[int | float, ...]
    j: tuple[int | Fraction | float, ...]
    start: tuple[float, ...]
    bounds: tuple[tuple[int, int], ...]
    flags: frozenset[str]
    global_via: tuple[str, ...]
    heatmap: np.ndarray
    support: tuple[tuple[int, ...], ...]
    input_shape: tuple[int, ...]
    mode: str
    weights: str
    measured: Mapping[tuple[int, ...], tuple[tuple[int, int], ...]] = field(default_factory=dict)
    notes: tuple[str, ...] = ()
    growth_refused: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "measured", MappingProxyType(dict(self.measured)))

    def bounds_of(self, unit: tuple[int, ...]) -> tuple[tuple[int, int], ...]:
        """Measured bounds of one of the units the probe seeded (the probed unit, the centre
        unit and its neighbours along each axis)."""
        unit = tuple(unit)
        if unit not in self.measured:
            raise KeyError(f"unit {unit} was not measured; measured units: {sorted(self.measured)}")
        return self.measured[unit]

    @property
    def offset(self) -> tuple[float, ...]:
        """First pixel unit 0 sees (top-left convention of numeric tools)."""
        return tuple(s - r / 2 for s, r in zip(self.start, self.r))

    def describe_flags(self) -> str:
        return describe_flags(self.flags, self.global_via, self.notes)

    def __repr__(self) -> str:
        flags = f", flags={self.describe_flags()!r}" if self.flags else ""
        return (
            f"ProbeResult(node={self.node!r}, unit={self.unit}, n={self.n}, r={self.r}, "
            f"j={tuple(str(j) for j in self.j)}, start={self.start}, bounds={self.bounds}{flags})"
        )


@dataclass(frozen=True, eq=False)
class EffectiveField:
    """The effective receptive field (Luo et al., 2016) of one unit, with the model's real weights.

    - ``heatmap``: mean ``|input gradient|`` (summed over channels) over ``n_inputs`` random
      inputs; ``unit``: the structural probe's centre unit, indexed on the
      input the real-weights passes ran on (``input_shape``: it may be smaller than the
      probe's, never smaller than the user's; see :func:`rfnumeric.effective`).
    - ``centre``: per axis, the gradient-mass centroid in input coordinates (pixel ``i`` has its
      centre at ``i + 0.5``).
    - ``radii``: ``{0.5: (...), 0.9: (...), 0.99: (...)}``: per axis, the smallest distance ``ρ``
      from ``centre`` such that the pixels whose centres lie within ``ρ`` hold that fraction of
      the mass projected on the axis.
    - ``structural_r``: the structural field size per axis; ``ratio``: ``radii[0.9] /
      structural_r`` per axis (a Gaussian-like ERF filling the structural field reads about 0.5).
    """

    node: str
    axes: tuple[str, ...]
    unit: tuple[int, ...]
    heatmap: np.ndarray
    centre: tuple[float, ...]
    radii: Mapping[float, tuple[float, ...]]
    structural_r: tuple[int, ...]
    ratio: tuple[float, ...]
    input_shape: tuple[int, ...]
    n_inputs: int
    seed: int

    def __repr__(self) -> str:
        radii = ", ".join(f"{q}: {tuple(round(r, 2) for r in v)}" for q, v in self.radii.items())
        return (
            f"EffectiveField(node={self.node!r}, centre={tuple(round(c, 2) for c in self.centre)}, "
            f"radii={{{radii}}}, structural_r={self.structural_r}, ratio={tuple(round(r, 3) for r in self.ratio)})"
        )
