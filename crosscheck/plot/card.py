"""A synthetic test card: the default image under the plots (no download, no licence question)."""

from __future__ import annotations

import numpy as np

GRID_STEP = 16  # pixels between grid lines


def test_card(height: int, width: int) -> np.ndarray:
    """An RGB test card of ``height`` x ``width`` pixels, float64 in [0, 1], shape (H, W, 3).

    Muted colour gradients (red grows to the right, green downwards), a grey ramp along the
    bottom, a ring and a cross-hair at the centre, a square, a disc and a triangle, and dark grid
    lines every 16 pixels (on rows and columns 0, 16, 32, ...) so that positions can be read
    off a plot.

    >>> card = test_card(64, 96)
    >>> card.shape, float(card.min()) >= 0.0, float(card.max()) <= 1.0
    ((64, 96, 3), True, True)
    """
    for name, value in (("height", height), ("width", width)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"test_card {name} must be a positive int, got {value!r}")
    rows, cols = np.mgrid[0:height, 0:width]
    v = (rows + 0.5) / height  # 0 at the top, 1 at the bottom
    u = (cols + 0.5) / width  # 0 at the left, 1 at the right
    card = np.stack([0.30 + 0.35 * u, 0.30 + 0.35 * v, 0.62 - 0.25 * u], axis=-1)
    _paint_shapes(card, rows, cols)
    ramp = rows >= height - max(1, height // 10)
    card[ramp] = np.repeat(u[ramp][:, None], 3, axis=1)
    grid = (rows % GRID_STEP == 0) | (cols % GRID_STEP == 0)
    card[grid] *= 0.45
    return np.clip(card, 0.0, 1.0)


def _paint_shapes(card: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> None:
    """Draw the shapes in place, sized relative to the card."""
    height, width = card.shape[:2]
    unit = min(height, width)
    cy, cx = (height - 1) / 2, (width - 1) / 2
    distance = np.hypot(rows - cy, cols - cx)
    thickness = max(1.0, unit / 64)
    card[np.abs(distance - 0.3 * unit) <= thickness] = (0.92, 0.92, 0.85)  # ring
    cross = ((np.abs(rows - cy) <= thickness / 2) | (np.abs(cols - cx) <= thickness / 2)) & (distance <= 0.1 * unit)
    card[cross] = (0.95, 0.95, 0.95)
    side = 0.12 * unit  # square, upper left
    square = (np.abs(rows - 0.22 * height) <= side / 2) & (np.abs(cols - 0.2 * width) <= side / 2)
    card[square] = (0.85, 0.55, 0.20)
    disc = np.hypot(rows - 0.78 * height, cols - 0.2 * width) <= 0.07 * unit  # disc, lower left
    card[disc] = (0.25, 0.60, 0.35)
    top, half = 0.14 * height, 0.08 * unit  # triangle, upper right, apex up
    depth = rows - top
    triangle = (depth >= 0) & (depth <= 2 * half) & (np.abs(cols - 0.8 * width) <= depth / 2)
    card[triangle] = (0.30, 0.35, 0.75)
