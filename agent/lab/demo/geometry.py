"""Floor-plan geometry of the simulations: points, walls, distances and walls in between.

A wall is a straight segment; the line of sight between two devices crosses it when the
two segments properly intersect (touching an end point does not count). Functions take
numpy arrays so that the simulated field can handle every pair of agents at once.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
Point = tuple[float, float]


@dataclass(frozen=True, slots=True)
class Wall:
    """A wall from (x1, y1) to (x2, y2), in metres."""

    x1: float
    y1: float
    x2: float
    y2: float

    def to_json(self) -> list[float]:
        return [self.x1, self.y1, self.x2, self.y2]


def _cross(ax: FloatArray, ay: FloatArray, bx: FloatArray, by: FloatArray) -> FloatArray:
    return ax * by - ay * bx


def walls_crossed(p: FloatArray, q: FloatArray, walls: Sequence[Wall]) -> IntArray:
    """For each row i, how many walls the segment p[i] -> q[i] crosses (p, q: shape (n, 2))."""
    n = p.shape[0]
    if not walls or n == 0:
        return np.zeros(n, dtype=np.int64)
    w = np.array([[wl.x1, wl.y1, wl.x2, wl.y2] for wl in walls], dtype=np.float64)
    px, py = p[:, 0:1], p[:, 1:2]
    dx, dy = q[:, 0:1] - px, q[:, 1:2] - py
    ax, ay = w[None, :, 0], w[None, :, 1]
    ex, ey = w[None, :, 2] - ax, w[None, :, 3] - ay
    side_a = _cross(dx, dy, ax - px, ay - py)
    side_b = _cross(dx, dy, ax + ex - px, ay + ey - py)
    side_p = _cross(ex, ey, px - ax, py - ay)
    side_q = _cross(ex, ey, px + dx - ax, py + dy - ay)
    hit = (side_a * side_b < 0) & (side_p * side_q < 0)
    counts: IntArray = hit.sum(axis=1).astype(np.int64)
    return counts


def distances(p: FloatArray, q: FloatArray) -> FloatArray:
    """Row-wise Euclidean distances between p[i] and q[i]."""
    return np.hypot(q[:, 0] - p[:, 0], q[:, 1] - p[:, 1])


def link(a: Point, b: Point, walls: Sequence[Wall]) -> tuple[float, int]:
    """Distance in metres and walls in between for one pair of points."""
    p = np.array([a], dtype=np.float64)
    q = np.array([b], dtype=np.float64)
    return float(distances(p, q)[0]), int(walls_crossed(p, q, walls)[0])
