"""Counts of what the suite tried (models generated, bad inputs, disagreements), printed in the
pytest summary. Tests call :func:`add`; ``tests/conftest.py`` gathers the counts of every xdist
worker and prints one table at the end of the run."""

from __future__ import annotations

from collections import Counter

COUNTS: Counter[str] = Counter()


def add(what: str, amount: int = 1) -> None:
    """Count ``amount`` more of ``what`` (e.g. ``"generated nets compared"``)."""
    COUNTS[what] += amount


def lines(counts: Counter[str]) -> list[str]:
    width = max((len(k) for k in counts), default=0)
    return [f"  {what:<{width}}  {counts[what]}" for what in sorted(counts)]
