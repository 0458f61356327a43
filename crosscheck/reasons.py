"""Why a row of :func:`crosscheck.compare` reads as it does: one code per reason, in one place.

Each code has a *kind*, which is all the verdict, the summary counts, :func:`assert_agree` and
the command line's exit status read (never the words):

- ``disagree``: both sides answered and some compared unit sees other pixels (or the maps
  have other sizes): the row disagrees;
- ``not_compared``: one side has no answer for this row, so nothing could be compared: the row
  neither agrees nor disagrees;
- ``note``: a fact about the row that changes nothing in its verdict.

>>> Reason.PIXELS_DIFFER.kind, Reason.PIXELS_DIFFER.value
('disagree', 'pixels_differ')
"""

from __future__ import annotations

from enum import Enum

DISAGREE, NOT_COMPARED, NOTE = "disagree", "not_compared", "note"


class Reason(str, Enum):
    """A reason code; ``kind`` and ``meaning`` say what it stands for."""

    kind: str
    meaning: str

    def __new__(cls, value: str, kind: str, meaning: str) -> Reason:
        member = str.__new__(cls, value)
        member._value_ = value
        member.kind = kind
        member.meaning = meaning
        return member

    PIXELS_DIFFER = (
        "pixels_differ",
        DISAGREE,
        "a compared unit sees other input pixels on the two sides (the text names the first one, "
        "the input size, and both sets' bounds)",
    )
    SIZE_DIFFERS = (
        "size_differs",
        DISAGREE,
        "the map has another number of units on the two sides",
    )
    NUMERIC_ONLY = (
        "numeric_only",
        NOT_COMPARED,
        "torch.fx cannot trace the model: every row was measured by the probe, so there is no "
        "independent analytic answer to compare with",
    )
    ANALYTIC_ONLY = (
        "analytic_only",
        NOT_COMPARED,
        "the probe cannot address this node (a function call in a model it runs without "
        "torch.fx) or cannot tell where its units are (tokens it cannot place on the grid)",
    )
    PROBE_FAILED = (
        "probe_failed",
        NOT_COMPARED,
        "the probe could not measure this node's units at the user's input (the text says why)",
    )
    APPROXIMATE_SHAPE = (
        "approximate_shape",
        NOT_COMPARED,
        "the analytic support is a union of more rectangles than rfarith keeps (flag "
        "'approximate'): its shape was replaced by the per-axis union, so bounds are compared and "
        "the numeric pixels must lie inside them, but pixel sets are not compared",
    )
    UNDERFLOW = (
        "underflow",
        NOT_COMPARED,
        "the pixel sets differ where the probe's gradients underflowed: its support may be short",
    )
    CAUSAL_BESIDE = (
        "causal_beside",
        NOT_COMPARED,
        "mode 'full': a unidirectional recurrence (flag 'causal') meets another path (a residual "
        "or another global op) on the way, and rfarith keeps only the local field there: the "
        "full set of each unit is not known analytically (mode 'local' compares this row)",
    )
    MEASURED_OP = (
        "measured_op",
        NOTE,
        "an op on the way has no analytic rule: rfarith measured it alone as a black box and "
        "composed the rest exactly (the row is still compared with the whole model's probe)",
    )
    GLOBAL = (
        "global",
        NOTE,
        "a global reduction lets every unit see the whole input; the sets compared are the local "
        "field (mode 'local') or the whole input (mode 'full', where a merge left the global path "
        "out of the local field; a chain through one global op compares its own sets)",
    )
    USER_INPUT_ONLY = (
        "user_input_only",
        NOTE,
        "the field does not fit the user's input and the probe could not grow it (too wide for "
        "max_size, ops that follow the input size, or a model that rejects other sizes): the "
        "units were compared, clipped, at the user's input only",
    )
    NO_FIT = (
        "no_fit",
        NOTE,
        "the probe fitted no j, r, start for this map (information only: the sets decide)",
    )

    def __str__(self) -> str:
        return self.value


def of_kind(codes, kind: str) -> list[Reason]:
    """The codes among ``codes`` of one kind."""
    return [Reason(c) for c in codes if Reason(c).kind == kind]


def status(codes) -> str:
    """'disagree', 'not_compared' or 'agree' for a row carrying ``codes`` (disagreeing first:
    a row that both differs and lacks some comparison disagrees)."""
    kinds = {Reason(c).kind for c in codes}
    if DISAGREE in kinds:
        return DISAGREE
    if NOT_COMPARED in kinds:
        return NOT_COMPARED
    return "agree"
