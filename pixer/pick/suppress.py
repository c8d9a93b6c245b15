"""Greedy non-maximum suppression of picks: PIXER's box-overlap rule and a plain distance rule.

Both resolve "the stronger of two conflicting picks survives, and a suppressed pick suppresses
nothing" (greedy in score order) with :func:`greedy_keep`, vectorised in parallel rounds instead
of a Python loop over picks. Coordinates are pixels; inputs are sorted by decreasing score.
"""

from __future__ import annotations

import numpy as np
from scipy.spatial import cKDTree

__all__ = ["greedy_keep", "suppress_overlaps", "suppress_within"]


def greedy_keep(n: int, pairs: np.ndarray) -> np.ndarray:
    """Which of ``n`` score-sorted picks greedy suppression keeps.

    Parameters
    ----------
    n
        Number of picks (index 0 is the strongest).
    pairs
        ``(m, 2)`` int conflicting pairs ``[i, j]`` with ``i < j`` (``i`` stronger).

    Returns
    -------
    np.ndarray
        ``(n,)`` bool: kept unless a *kept* stronger pick conflicts with it.
    """
    pairs = np.asarray(pairs, dtype=np.int64).reshape(-1, 2)
    state = np.zeros(n, dtype=np.int8)  # 0 unsettled, 1 kept, -1 suppressed
    involved = np.zeros(n, dtype=bool)
    involved[pairs.ravel()] = True
    state[~involved] = 1
    # A pick is settled once all its stronger conflicting neighbours are settled.
    while (state == 0).any():
        strong, weak = pairs[:, 0], pairs[:, 1]
        killed = np.zeros(n, dtype=bool)
        killed[weak[state[strong] == 1]] = True
        pending = np.zeros(n, dtype=bool)
        pending[weak[state[strong] == 0]] = True
        undecided = state == 0
        state[undecided & killed] = -1
        state[undecided & ~killed & ~pending] = 1
    return state == 1


def suppress_overlaps(xy: np.ndarray, diameter_px: float, overlap: float = 0.7) -> np.ndarray:
    """Greedy non-maximum suppression of overlapping particle boxes.

    Of two picks closer than ``diameter_px`` whose square boxes of side
    ``diameter_px`` overlap by more than ``overlap * diameter_px**2`` (overlap
    area ``(d - |dx|) * (d - |dy|)``), the stronger one is kept; a pick removed
    by a stronger one does not suppress others (greedy in score order).

    Parameters
    ----------
    xy
        ``(n, 2)`` float, pixel coordinates **sorted by decreasing score**.
    diameter_px
        Particle diameter (box side) in pixels.
    overlap
        Fraction of the box area above which the weaker pick is dropped.

    Returns
    -------
    np.ndarray
        ``(n,)`` bool, True for picks to keep.
    """
    n = len(xy)
    keep = np.ones(n, dtype=bool)
    if n < 2 or diameter_px <= 0:
        return keep
    d = float(diameter_px)
    pairs = cKDTree(xy).query_pairs(r=d, output_type="ndarray")  # i < j: i is stronger
    if len(pairs) == 0:
        return keep
    delta = np.abs(xy[pairs[:, 0]] - xy[pairs[:, 1]])
    close = np.hypot(delta[:, 0], delta[:, 1]) < d
    area = np.clip(d - delta[:, 0], 0, None) * np.clip(d - delta[:, 1], 0, None)
    pairs = pairs[close & (area > overlap * d * d)]
    return greedy_keep(n, pairs)


def suppress_within(xy: np.ndarray, min_px: float) -> np.ndarray:
    """Greedy suppression of picks within ``min_px`` (inclusive) of a stronger kept pick.

    Parameters
    ----------
    xy
        ``(n, 2)`` float, pixel coordinates **sorted by decreasing score**.
    min_px
        Least distance between kept picks, pixels.

    Returns
    -------
    np.ndarray
        ``(n,)`` bool, True for picks to keep.
    """
    n = len(xy)
    if n < 2 or not min_px > 0:
        return np.ones(n, dtype=bool)
    return greedy_keep(n, cKDTree(np.asarray(xy, dtype=np.float64)).query_pairs(r=float(min_px), output_type="ndarray"))
