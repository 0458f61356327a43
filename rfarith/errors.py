"""The errors rfcheck raises: one base class, one subclass per thing a user can hit.

Every message says what happened, where (node, module type, shapes), and what to do next.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class RFError(Exception):
    """Base class of every error raised by rfarith, rfnumeric and crosscheck."""


class UnsupportedOp(RFError):
    """An op on the model's path has no receptive-field rule and is not on the neutral list."""

    WAY_OUT = (
        "register one with rfarith.register_rule / register_neutral / register_window, or run "
        "crosscheck.hybrid(model, input_shape), which measures this op with the gradient probe"
    )

    def __init__(self, node: str, op: str, detail: str = "", way_out: str | None = None) -> None:
        self.node = node
        self.op = op
        self.detail = detail
        self.way_out = way_out
        reason = f": {detail}" if detail else ""
        super().__init__(f"no receptive-field rule for {op} at node '{node}'{reason}. Way out: {way_out or self.WAY_OUT}.")


class TraceError(RFError):
    """torch.fx could not trace a module (data-dependent control flow, unsupported Python)."""

    def __init__(self, module_path: str, module_type: str, reason: str) -> None:
        self.module_path = module_path
        self.module_type = module_type
        self.reason = reason
        where = f"module '{module_path}' ({module_type})" if module_path else f"the model ({module_type})"
        leaf = f"['{module_path}']" if module_path else f"[{module_type}] (the class)"  # the root has no path
        super().__init__(
            f"torch.fx could not trace {where}: {reason}. "
            f"Way out: pass leaf_modules={leaf} together with a rule "
            "for it (rfarith.register_rule), or use crosscheck.hybrid / rfnumeric.probe, "
            "which need no trace."
        )


class ShapeError(RFError):
    """The input does not fit the model: wrong rank or channels, or too small for some layer.

    ``kind`` is one of ``"channels"``, ``"too_small"``, ``"rank"``, ``"other"``.
    """

    def __init__(self, message: str, node: str | None = None, kind: str = "other") -> None:
        self.node = node
        self.kind = kind
        super().__init__(message)


class UnknownNode(RFError, KeyError):
    """A node name that the traced graph does not have."""

    def __init__(self, name: str, known: Iterable[str]) -> None:
        self.name = name
        known = list(known)
        close = difflib.get_close_matches(name, known, n=5, cutoff=0.5)
        hint = f" Close names: {', '.join(close)}." if close else ""
        preview = ", ".join(known[:8]) + (", ..." if len(known) > 8 else "")
        super().__init__(
            f"unknown node name '{name}'.{hint} Known nodes ({len(known)}): {preview}. "
            "List them all with rfarith.node_names(model, input_shape)."
        )

    def __str__(self) -> str:  # KeyError would otherwise quote the message
        return str(self.args[0])


class ProbeError(RFError):
    """The numeric probe could not produce a trustworthy answer (NaN, underflow, size limit).

    ``kind`` says why, for callers that explain it: ``"too_wide"`` (the field does not fit
    ``max_size``), ``"size_dependent"`` (the field grows with the input), ``"layout"`` (the
    probe cannot locate the map's units), ``"forward"`` (the model rejected the probe's input),
    ``"memory"`` (a pass would exceed its memory budget), ``"other"``.
    """

    def __init__(self, message: str, kind: str = "other") -> None:
        self.kind = kind
        super().__init__(message)


class NotComputed(RFError):
    """A row of a report whose field could not be computed (the report says why); it is kept
    in the table with NaN, never dropped, and asking for its field raises this."""
