"""The core of ``pixer pick``: one micrograph in, a picks table out.

``pick_image`` is the pure function the architecture describes:
``(image, pixel size, model, parameters) → picks``. The micrograph is
Fourier-cropped to the pixel size the model expects (the particle diameter in
Å divided by the model's ``particle_px``), normalised, segmented tile by tile
into a particle-probability map, and the grid-based local-maximum search turns
the map into centres, which are scaled back to the input micrograph's pixels.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from pixer.data.preprocess import prepare
from pixer.data.tiles import Stitcher, iter_tile_batches
from pixer.pick.localmax import grid_local_maxima


@dataclass
class PickParams:
    """Picking parameters; lengths in Å.

    Attributes
    ----------
    diameter_A
        Particle diameter in Å.
    threshold
        Minimum score (probability map peak, 0-1) a pick must reach.
    min_distance_A
        Two picks closer than this are one particle (default: 0.8 × diameter
        through the local-maximum search's overlap rule).
    grid_fraction
        Grid cell of the local-maximum search as a fraction of the diameter.
    max_picks
        Cap on picks per micrograph (``None``: no cap).
    batch_size
        Tiles per forward pass.
    tile, stride
        Inference tile and stride in pixels at the model's pixel size
        (PIXER: 512 and 256; overlaps are averaged).
    """

    diameter_A: float
    threshold: float = 0.5
    min_distance_A: float | None = None
    grid_fraction: float = 0.1
    max_picks: int | None = None
    batch_size: int = 8
    tile: int = 512
    stride: int = 256


def model_apix(config: dict, diameter_A: float, apix: float) -> float:
    """Pixel size (Å/px) at which the model sees a particle of ``diameter_A``.

    Models store ``particle_px``, the particle diameter in pixels they were
    trained at; the micrograph is binned to ``diameter_A / particle_px``, but
    never finer than its own pixel size (no upsampling).
    """
    return max(float(apix), float(diameter_A) / float(config["particle_px"]))


@torch.no_grad()
def probability_map(
    image: np.ndarray,
    model: torch.nn.Module,
    tile: int,
    stride: int,
    batch_size: int = 8,
    device: str | torch.device = "cpu",
) -> np.ndarray:
    """Particle-probability map of a prepared (binned, normalised) image.

    Tiles are pushed through the network in batches and stitched by averaging
    overlaps, so memory is bounded by ``batch_size`` tiles whatever the
    micrograph size.

    Parameters
    ----------
    image
        ``(h, w)`` float32, already at the model's pixel size and normalised.
    model
        Segmentation network returning logits ``(b, 1, t, t)``.
    tile, stride
        Tile size and stride in pixels.

    Returns
    -------
    np.ndarray
        ``(h, w)`` float32 probabilities in [0, 1].
    """
    model.eval()
    stitcher = Stitcher(image.shape, tile, device=device)
    for batch, positions in iter_tile_batches(image, tile, stride, batch_size):
        x = torch.as_tensor(np.ascontiguousarray(batch), dtype=torch.float32, device=device)
        prob = torch.sigmoid(model(x[:, None]))[:, 0]
        stitcher.add(prob, positions)
    return stitcher.result().float().cpu().numpy()


def pick_image(
    image: np.ndarray,
    apix: float,
    model: torch.nn.Module,
    config: dict,
    params: PickParams,
    device: str | torch.device = "cpu",
) -> tuple[pd.DataFrame, np.ndarray, float]:
    """Pick particles on one micrograph.

    Parameters
    ----------
    image
        ``(h, w)`` micrograph (any real dtype), finite values.
    apix
        Its pixel size in Å/px.
    model, config
        Segmentation network and its stored configuration (``particle_px``,
        ``norm_k``).
    params
        Picking parameters (Å).

    Returns
    -------
    picks
        Columns ``x``, ``y`` (micrograph pixels, 0-based, x = column) and
        ``score``, sorted by descending score.
    prob
        ``(h', w')`` probability map at the binned pixel size.
    apix_used
        Pixel size of ``prob`` in Å/px.
    """
    target = model_apix(config, params.diameter_A, apix)
    small, apix_used = prepare(np.asarray(image, dtype=np.float32), apix, target, k=config.get("norm_k", 3.0))
    prob = probability_map(small, model, params.tile, params.stride, params.batch_size, device)
    diameter_px = params.diameter_A / apix_used
    xy, scores = grid_local_maxima(
        prob,
        diameter_px,
        grid_fraction=params.grid_fraction,
        min_score=params.threshold,
        max_picks=params.max_picks,
    )
    xy = np.asarray(xy, dtype=np.float64).reshape(-1, 2)
    scale_x = image.shape[1] / small.shape[1]
    scale_y = image.shape[0] / small.shape[0]
    picks = pd.DataFrame(
        {"x": xy[:, 0] * scale_x, "y": xy[:, 1] * scale_y, "score": np.asarray(scores, dtype=np.float64)}
    )
    if params.min_distance_A:
        picks = _enforce_min_distance(picks, params.min_distance_A / apix)
    return picks.sort_values("score", ascending=False, ignore_index=True), prob, apix_used


def _enforce_min_distance(picks: pd.DataFrame, min_px: float) -> pd.DataFrame:
    """Greedy removal of weaker picks closer than ``min_px`` to a stronger one."""
    from scipy.spatial import cKDTree

    if len(picks) < 2:
        return picks
    order = np.argsort(-picks["score"].to_numpy(), kind="stable")
    xy = picks[["x", "y"]].to_numpy()[order]
    tree = cKDTree(xy)
    keep = np.ones(len(xy), dtype=bool)
    for i in range(len(xy)):
        if keep[i]:
            for j in tree.query_ball_point(xy[i], min_px):
                if j > i:
                    keep[j] = False
    return picks.iloc[order[keep]].reset_index(drop=True)


# --- thresholds -------------------------------------------------------------------------------
#
# Parts store every candidate above a low floor; the threshold is applied when the parts are
# gathered, so a run can be re-thresholded without recomputing. Keeping picks "strictly above"
# the threshold matches :func:`grid_local_maxima`'s ``min_score``, and greedy suppression in
# score order commutes with thresholding, so "floor, then threshold" equals "threshold" directly.

#: Scores at or below this are never stored (background speckle).
CANDIDATE_FLOOR = 0.05
#: Threshold used when the automatic rule finds no clear split.
FALLBACK_THRESHOLD = 0.5
#: Fewest candidates for the automatic rule to trust a histogram.
AUTO_MIN_CANDIDATES = 30
#: Least Otsu separability (between-class / total variance) taken as "bimodal" (a uniform
#: sample gives 0.75, two well separated modes > 0.9).
AUTO_MIN_SEPARABILITY = 0.8
#: The automatic threshold is clamped into this range.
AUTO_RANGE = (0.1, 0.9)


def otsu_threshold(scores: np.ndarray, bins: int = 256, lo: float = 0.0, hi: float = 1.0) -> tuple[float, float]:
    """Otsu's split of a score sample.

    Parameters
    ----------
    scores
        ``(n,)`` scores in ``[lo, hi]``.
    bins
        Histogram bins over ``[lo, hi]``.

    Returns
    -------
    threshold
        Upper edge of the bin that maximises the between-class variance
        (the middle of the range of such edges when an empty gap separates
        the modes); scores strictly above it form the upper class.
    separability
        ``sigma_between^2 / sigma_total^2`` at that split, in [0, 1]: near 1
        for two well separated modes, low for a unimodal sample.
    """
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    if len(s) < 2 or np.ptp(s) == 0:
        return float(np.median(s)) if len(s) else FALLBACK_THRESHOLD, 0.0
    hist, edges = np.histogram(np.clip(s, lo, hi), bins=bins, range=(lo, hi))
    p = hist / hist.sum()
    centres = 0.5 * (edges[1:] + edges[:-1])
    omega = np.cumsum(p)[:-1]  # weight of the lower class when splitting after bin k
    mu = np.cumsum(p * centres)[:-1]
    mu_t = float((p * centres).sum())
    with np.errstate(divide="ignore", invalid="ignore"):
        between = np.where((omega > 0) & (omega < 1), (mu_t * omega - mu) ** 2 / (omega * (1 - omega)), 0.0)
    best = np.flatnonzero(between >= between.max() * (1 - 1e-9))
    k = int(best[0] + best[-1]) // 2  # middle of a flat optimum (an empty gap between modes)
    var_total = float((p * (centres - mu_t) ** 2).sum())
    return float(edges[k + 1]), float(between[k] / var_total) if var_total > 0 else 0.0


def auto_threshold(scores: np.ndarray) -> tuple[float, str]:
    """The ``--threshold auto`` rule.

    Scores of the local maxima of a trained model's map are bimodal: background
    maxima near the floor, particles near 1. Otsu's method splits the pooled
    candidate scores (all micrographs); the split is used when there are at
    least ``AUTO_MIN_CANDIDATES`` candidates and the separability is at least
    ``AUTO_MIN_SEPARABILITY``, clamped into ``AUTO_RANGE``. Otherwise the fixed
    probability cutoff ``FALLBACK_THRESHOLD`` (0.5) is used.

    Parameters
    ----------
    scores
        ``(n,)`` candidate scores (above :data:`CANDIDATE_FLOOR`).

    Returns
    -------
    threshold, rule
        The threshold and a one-line description of how it was chosen.
    """
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    if len(s) < AUTO_MIN_CANDIDATES:
        return FALLBACK_THRESHOLD, f"auto: fallback {FALLBACK_THRESHOLD} (only {len(s)} candidates)"
    t, eta = otsu_threshold(s)
    if eta < AUTO_MIN_SEPARABILITY:
        return FALLBACK_THRESHOLD, f"auto: fallback {FALLBACK_THRESHOLD} (scores not bimodal, separability {eta:.2f})"
    t = float(np.clip(t, *AUTO_RANGE))
    return t, f"auto: Otsu split of {len(s)} candidate scores (separability {eta:.2f})"


def calibrated_threshold(candidates: pd.DataFrame, truth: pd.DataFrame, diameter_px: float) -> tuple[float, str]:
    """The F1-optimal threshold on micrographs with known particles.

    Parameters
    ----------
    candidates
        Picks table (``micrograph``, ``x``, ``y``, ``score``; micrograph px)
        restricted to the labelled micrographs.
    truth
        Labelled particles (``micrograph``, ``x``, ``y``; same pixels).
    diameter_px
        Particle diameter in micrograph pixels (matching radius: half of it).

    Returns
    -------
    threshold, rule
        A value between the best-F1 score and the next lower candidate score,
        so that "strictly above" keeps exactly the best-F1 picks.
    """
    from pixer.evaluate.metrics import evaluate

    result = evaluate(candidates, truth, diameter_px=diameter_px)
    thresholds = np.asarray(result["thresholds"], dtype=np.float64)
    if result["best_threshold"] is None or not len(thresholds):
        return FALLBACK_THRESHOLD, f"calibration: no candidates, fallback {FALLBACK_THRESHOLD}"
    k = int(np.flatnonzero(thresholds == result["best_threshold"])[0])
    below = thresholds[k + 1] if k + 1 < len(thresholds) else min(CANDIDATE_FLOOR, thresholds[k])
    t = float(0.5 * (thresholds[k] + below))
    n_mics = truth["micrograph"].nunique()
    return t, f"calibrated: best F1 {result['best_f1']:.3f} on {n_mics} labelled micrograph(s)"


def apply_threshold(picks: pd.DataFrame, threshold: float, max_picks: int | None = None) -> pd.DataFrame:
    """Picks scoring strictly above ``threshold``, at most ``max_picks`` per micrograph.

    ``picks`` has ``micrograph`` and ``score`` columns; the row order is kept
    (parts are sorted by descending score, so the cap keeps the strongest).
    """
    kept = picks[picks["score"] > threshold]
    if max_picks is not None:
        kept = kept[kept.groupby("micrograph", sort=False).cumcount() < max_picks]
    return kept.reset_index(drop=True)
