"""PIXER's grid-based local-maximum search on a particle-probability map.

The released PIXER code turns the segmentation output into particle centres in
five steps; each is one small function here, vectorised with torch so that the
same code runs on CPU and CUDA tensors:

1. :func:`smooth_map` correlates the map with a normalised Gaussian window the
   size of the particle (side ``2*ceil(d/2)+1`` px, sigma ``0.1 d`` px), so that
   a blob peaks at its centre and pixel speckle is damped. (A wider sigma,
   ``d/4``, merged touching particles of densely packed micrographs into one
   peak: EMPIAR-10059/10947 lost a quarter of their recall to it.)
2. :func:`grid_candidates` takes the arg-max of every grid cell of side
   ``max(1, round(grid_fraction * d))`` px.
3. :func:`hill_climb` moves every candidate to the maximum of the window of side
   ``0.6 d`` around it, again and again (at most 500 steps), through a precomputed
   "arg-max of my window" index map (:func:`window_argmax_map`). The end points
   are the maxima of their own window; duplicates are removed.
4. :func:`suppress_overlaps`: of two picks closer than a diameter whose square
   boxes (side ``d``) overlap by more than ``overlap * d**2``, keep the stronger.
5. :func:`grid_local_maxima` strings the steps together, sorts by score and
   applies the ``min_score`` threshold, ``keep_fraction`` and ``max_picks`` cap.

Units: everything here is in **pixels of the map**; the caller converts Å.
Coordinates are returned as ``x`` = column, ``y`` = row of ``prob[y, x]``.

Ties (a plateau of equal values) are broken towards the first pixel in raster
order of each window, so hill climbing can never cycle and a flat plateau
yields one pick (with ``smooth=True`` the plateau becomes a peak at its centre).

Example
-------
>>> xy, scores = grid_local_maxima(prob, diameter_px=40.0, min_score=0.3)  # doctest: +SKIP
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from pixer.pick.suppress import suppress_overlaps

#: Gaussian sigma of the smoothing window, as a fraction of the particle diameter.
SMOOTH_SIGMA_FRACTION = 0.1
#: Hill-climbing window side, as a fraction of the particle diameter.
WINDOW_FRACTION = 0.6
#: Bound on hill-climbing steps (as in the released PIXER code).
MAX_CLIMB_STEPS = 500

__all__ = [
    "grid_candidates",
    "grid_local_maxima",
    "hill_climb",
    "picks_to_frame",
    "smooth_map",
    "suppress_overlaps",
    "window_argmax_map",
]


def _as_map(prob: np.ndarray | torch.Tensor) -> torch.Tensor:
    """``(h, w)`` float32 (float64 kept) tensor with NaN/inf replaced by 0."""
    t = prob if isinstance(prob, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(prob))
    if t.ndim != 2:
        raise ValueError(f"probability map must be 2-D (h, w), got shape {tuple(t.shape)}")
    if t.dtype != torch.float64:
        t = t.to(torch.float32)
    return torch.nan_to_num(t, nan=0.0, posinf=0.0, neginf=0.0)


def _odd_window(size_px: float) -> int:
    """Odd window side (px) closest to ``size_px``, at least 1."""
    return 2 * max(0, int(round(size_px / 2.0))) + 1


def smooth_map(prob: torch.Tensor, diameter_px: float, sigma_fraction: float = SMOOTH_SIGMA_FRACTION) -> torch.Tensor:
    """Correlate a map with a normalised Gaussian window the size of the particle.

    Parameters
    ----------
    prob
        ``(h, w)`` float tensor, any device.
    diameter_px
        Particle diameter in map pixels. The window side is ``2*ceil(d/2)+1`` px,
        sigma ``sigma_fraction * d`` px (at least 0.5 px); the kernel sums to 1, so
        a map in [0, 1] stays in [0, 1]. Borders are padded by replication.
    sigma_fraction
        Gaussian sigma as a fraction of the diameter.

    Returns
    -------
    torch.Tensor
        ``(h, w)`` smoothed map, same dtype and device.
    """
    h, w = prob.shape
    half = max(1, int(math.ceil(diameter_px / 2.0)))
    sigma = max(sigma_fraction * diameter_px, 0.5)
    x = torch.arange(-half, half + 1, dtype=prob.dtype, device=prob.device)
    k = torch.exp(-0.5 * (x / sigma) ** 2)
    k = k / k.sum()
    img = F.pad(prob[None, None], (half, half, half, half), mode="replicate")[0, 0]
    hp, wp = img.shape
    # Multiply spectra; the circular wrap never reaches the cropped valid region.
    # The separable kernel's 2-D spectrum is the outer product of two 1-D ones.
    ky = torch.roll(F.pad(k, (0, hp - k.numel())), -half)
    kx = torch.roll(F.pad(k, (0, wp - k.numel())), -half)
    spectrum = torch.fft.fft(ky)[:, None] * torch.fft.rfft(kx)[None, :]
    out = torch.fft.irfft2(torch.fft.rfft2(img) * spectrum, s=(hp, wp))
    return out[half : half + h, half : half + w].contiguous()


def grid_candidates(score: torch.Tensor, cell_px: int) -> torch.Tensor:
    """Flat index of the arg-max of every ``cell_px`` x ``cell_px`` grid cell.

    The map is padded with ``-inf`` to a multiple of the cell, so every cell holds
    at least one real pixel and the padding is never chosen.

    Parameters
    ----------
    score
        ``(h, w)`` float tensor.
    cell_px
        Cell side in pixels (>= 1).

    Returns
    -------
    torch.Tensor
        ``(n_cells,)`` int64 flat indices ``y * w + x`` into ``score``.
    """
    h, w = score.shape
    c = max(1, int(cell_px))
    gh, gw = -(-h // c), -(-w // c)
    padded = F.pad(score[None, None], (0, gw * c - w, 0, gh * c - h), value=float("-inf"))[0, 0]
    cells = padded.view(gh, c, gw, c).permute(0, 2, 1, 3).reshape(gh, gw, c * c)
    arg = cells.argmax(dim=-1)
    rows = torch.arange(gh, device=score.device)[:, None] * c + arg // c
    cols = torch.arange(gw, device=score.device)[None, :] * c + arg % c
    return (rows * w + cols).reshape(-1)


def _first_argmax_scan(block: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Running maximum along the last axis and the first position attaining it.

    ``block`` is ``(..., k)``; returns the values and int32 positions ``(..., k)``.
    The position is where the running maximum last rose strictly, so ties go to
    the earliest element whatever ``torch.cummax``'s own tie rule is.
    """
    values = torch.cummax(block, dim=-1).values
    rises = torch.ones_like(values, dtype=torch.bool)
    rises[..., 1:] = values[..., 1:] > values[..., :-1]
    pos = torch.arange(block.shape[-1], dtype=torch.int32, device=block.device) * rises
    return values, torch.cummax(pos, dim=-1).values


def _last_argmax_scan(block: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Running maximum along the last axis and the last position attaining it."""
    values = torch.cummax(block, dim=-1).values
    pos = torch.arange(block.shape[-1], dtype=torch.int32, device=block.device) * (block == values)
    return values, torch.cummax(pos, dim=-1).values


def _sliding_argmax_1d(x: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Centred sliding-window maximum along the last axis (van Herk / Gil-Werman).

    ``x`` is ``(n, L)``, ``k`` odd; outside the array counts as ``-inf``. Returns
    the ``(n, L)`` window maxima and int32 positions (in ``[0, L)``) of the first
    maximum, with ``O(1)`` work per element: each window is a suffix of one block
    of ``k`` followed by a prefix of the next block.
    """
    n, length = x.shape
    r = k // 2
    n_blocks = -(-(length + 2 * r) // k)
    xp = F.pad(x, (r, n_blocks * k - length - r), value=float("-inf"))
    blocks = xp.view(n, n_blocks, k)
    start = torch.arange(n_blocks * k, dtype=torch.int32, device=x.device) // k * k
    pre_v, pre_i = _first_argmax_scan(blocks)
    suf_v, suf_i = _last_argmax_scan(blocks.flip(-1))
    # Window of output j covers padded positions [j, j + k - 1].
    sv = suf_v.flip(-1).reshape(n, -1)[:, :length]
    si = (k - 1 - r) - suf_i.flip(-1).reshape(n, -1)[:, :length] + start[:length]
    pv = pre_v.reshape(n, -1)[:, k - 1 : k - 1 + length]
    pi = pre_i.reshape(n, -1)[:, k - 1 : k - 1 + length] + (start[k - 1 : k - 1 + length] - r)
    take_suffix = sv >= pv  # the suffix holds the earlier positions
    return torch.where(take_suffix, sv, pv), torch.where(take_suffix, si, pi)


def window_argmax_map(score: torch.Tensor, window_px: int) -> torch.Tensor:
    """For every pixel, the flat index of the maximum of the window centred on it.

    Computed separably (along rows, then along columns) with a block-scan
    sliding maximum, ``O(1)`` per pixel whatever the window. Ties go to the
    first pixel in raster order of the window (smallest row, then column).

    Parameters
    ----------
    score
        ``(h, w)`` float tensor.
    window_px
        Odd window side in pixels; pixels outside the map never win.

    Returns
    -------
    torch.Tensor
        ``(h, w)`` int64 flat indices ``y * w + x``.
    """
    w = score.shape[1]
    k = int(window_px) | 1
    row_max, col_idx = _sliding_argmax_1d(score, k)  # (h, w): best column in each row window
    _, row_idx = _sliding_argmax_1d(row_max.t().contiguous(), k)  # (w, h): best row
    row_idx = row_idx.t().long()
    col = col_idx.gather(0, row_idx)
    return row_idx * w + col


def hill_climb(start: torch.Tensor, next_idx: torch.Tensor, max_steps: int = MAX_CLIMB_STEPS) -> torch.Tensor:
    """Follow "jump to the arg-max of my window" from each start to a fixed point.

    Parameters
    ----------
    start
        ``(n,)`` int64 flat pixel indices.
    next_idx
        ``(h*w,)`` int64, the window arg-max map of :func:`window_argmax_map`.
    max_steps
        Bound on the number of jumps.

    Returns
    -------
    torch.Tensor
        ``(k,)`` sorted, de-duplicated end points (``k <= n``). Values never
        decrease along a path and ties move strictly backwards in raster order,
        so paths cannot cycle.
    """
    idx = torch.unique(start)
    for _ in range(max_steps):
        new = torch.unique(next_idx[idx])
        if new.shape == idx.shape and torch.equal(new, idx):
            break
        idx = new
    return idx


def grid_local_maxima(
    prob: np.ndarray | torch.Tensor,
    diameter_px: float,
    grid_fraction: float = 0.1,
    window_fraction: float = WINDOW_FRACTION,
    overlap: float = 0.7,
    min_score: float = 0.0,
    max_picks: int | None = None,
    smooth: bool = True,
    keep_fraction: float = 1.0,
    core_fraction: float | None = 0.4,
    smooth_sigma: float = SMOOTH_SIGMA_FRACTION,
) -> tuple[np.ndarray, np.ndarray]:
    """Find particle centres on a probability map (PIXER's grid local maximum).

    Parameters
    ----------
    prob
        ``(h, w)`` probability map in [0, 1], numpy array or torch tensor (CPU or
        CUDA; the work runs on the tensor's device).
    diameter_px
        Particle diameter in **map pixels** (convert from Å before calling).
    grid_fraction
        Grid cell side as a fraction of the diameter (cell = ``max(1, round(f*d))`` px).
    window_fraction
        Hill-climbing window side as a fraction of the diameter (odd, >= 1 px).
        0.6 (not 1.0) lets particles that touch keep a peak each; two peaks
        closer than that are one particle.
    overlap
        Box-overlap fraction of ``d**2`` above which the weaker of two picks is dropped.
    min_score
        Keep picks whose score is **strictly above** this (so the default 0 drops
        empty background).
    max_picks
        Keep at most this many (the strongest); None for no cap.
    smooth
        Correlate the map with a particle-sized Gaussian window first.
    keep_fraction
        Keep the strongest fraction of picks after suppression (PIXER keeps
        60-80 %); 1.0 keeps all.
    core_fraction
        Score each pick by the mean of the *unsmoothed* map over a square
        core of side ``core_fraction * d`` around it, so the score stays a
        probability (a confidently segmented particle scores near 1 whatever
        the smoothing). ``None``, or ``smooth=False``, scores with the map
        value at the peak.
    smooth_sigma
        Sigma of the smoothing Gaussian as a fraction of the diameter.

    Returns
    -------
    xy
        ``(n, 2)`` float64 pixel coordinates, ``[x = column, y = row]``, 0-based.
    scores
        ``(n,)`` float64 score of each pick (see ``core_fraction``), sorted descending.
    """
    if not diameter_px > 0:
        raise ValueError(f"diameter_px must be > 0, got {diameter_px}")
    raw = _as_map(prob)
    score = raw
    h, w = score.shape
    if h == 0 or w == 0:
        return np.zeros((0, 2)), np.zeros(0)
    with torch.no_grad():
        if smooth:
            score = smooth_map(score, diameter_px, smooth_sigma)
        cell = max(1, int(round(grid_fraction * diameter_px)))
        start = grid_candidates(score, cell)
        next_idx = window_argmax_map(score, _odd_window(window_fraction * diameter_px)).reshape(-1)
        peaks = hill_climb(start, next_idx)
        values = (core_scores(raw, peaks, core_fraction * diameter_px) if smooth and core_fraction
                  else score.reshape(-1)[peaks])
        ok = values > min_score
        peaks, values = peaks[ok], values[ok]
        order = torch.argsort(values, descending=True, stable=True)
        peaks = peaks[order].cpu().numpy()
        values = values[order].cpu().numpy().astype(np.float64)
    xy = np.stack([peaks % w, peaks // w], axis=1).astype(np.float64)
    keep = suppress_overlaps(xy, diameter_px, overlap)
    xy, values = xy[keep], values[keep]
    n = len(values)
    if keep_fraction < 1.0:
        n = int(math.ceil(max(keep_fraction, 0.0) * n))
    if max_picks is not None:
        n = min(n, max(int(max_picks), 0))
    return xy[:n], values[:n]


def core_scores(raw: torch.Tensor, peaks: torch.Tensor, side_px: float) -> torch.Tensor:
    """Mean of ``raw`` over an odd square window of about ``side_px`` around each peak.

    Parameters
    ----------
    raw
        ``(h, w)`` map.
    peaks
        ``(n,)`` flat indices into the map.
    side_px
        Window side in pixels (rounded to an odd number >= 1; zero padding at the edges
        counts as zero probability, with the mean over pixels inside the map).

    Returns
    -------
    torch.Tensor
        ``(n,)`` mean values.
    """
    k = _odd_window(side_px)
    x = raw[None, None].to(torch.float32)
    total = torch.nn.functional.avg_pool2d(x, k, stride=1, padding=k // 2, count_include_pad=False)[0, 0]
    return total.reshape(-1)[peaks]


def picks_to_frame(xy: np.ndarray, scores: np.ndarray, micrograph: str | None = None) -> pd.DataFrame:
    """Picks as a table with columns ``micrograph`` (if given), ``x``, ``y``, ``score`` (pixels)."""
    xy = np.asarray(xy, dtype=np.float64).reshape(-1, 2)
    data = {"x": xy[:, 0], "y": xy[:, 1], "score": np.asarray(scores, dtype=np.float64)}
    if micrograph is not None:
        data = {"micrograph": [micrograph] * len(xy), **data}
    return pd.DataFrame(data)
