"""The model's own pick threshold, chosen on its held-out validation micrographs.

A network's probabilities are not calibrated: a model fine-tuned on a few real
micrographs puts true particles at 0.3-0.4 where a model trained on clean
simulations puts them near 1, so one fixed cut (0.5) loses most of the recall
of the first. After training, :func:`calibrate_pick_threshold` picks every
held-out validation micrograph (whole images, the same tiles and local-maximum
search as ``pixer pick``) and keeps the F1-optimal score cut against the
particle centres of its labels. ``pixer pick --threshold auto`` uses it
(``config.json["pick_threshold"]``) when the candidate scores are not clearly
bimodal (:func:`pixer.pick.threshold.auto_threshold`).

Validation micrographs whose label is empty (negatives: bare ice, carbon,
contaminants) add a second condition: the cut is raised until they keep at most
``max_picks_per_empty`` picks each on average, since a picker that fills empty
micrographs with picks is worse than one that misses a few weak particles. Their
candidates are also kept as the model's background density (``null``: candidates per
particle area above each score), against which ``--threshold auto`` estimates how many
of a run's picks are background (:func:`pixer.pick.threshold.null_threshold`).
Since junk is clumpy and its amount changes between micrographs, the background also stores
how much more than Poisson counts its density varies between the empty micrographs
(``kappa``: :func:`pixer.pick.threshold.null_overdispersion`).

Truth centres are the centroids of the connected components of each label
(discs from coordinates, or the masks of ``pixer labels``); units are pixels
of the training grid.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import torch
from scipy import ndimage

from pixer.labels.discs import IGNORE

#: Fewest labelled validation particles to trust a calibration.
MIN_CALIBRATION_PARTICLES = 10


def label_centres(label: np.ndarray, min_px: int = 2) -> np.ndarray:
    """Centroids of the connected components of a binary label.

    Parameters
    ----------
    label
        ``(h, w)`` array, non-zero on particles (pixels at
        :data:`pixer.labels.discs.IGNORE` are not particles).
    min_px
        Components smaller than this many pixels are ignored (rounding specks
        of a binned label).

    Returns
    -------
    np.ndarray
        ``(n, 2)`` float64 ``[x, y]`` (column, row), pixels.
    """
    label = np.asarray(label)
    mask = (label > 0) & (label != IGNORE)
    lab, n = ndimage.label(mask)
    if n == 0:
        return np.zeros((0, 2))
    sizes = ndimage.sum(mask, lab, index=np.arange(1, n + 1))
    keep = np.flatnonzero(sizes >= min_px) + 1
    if not len(keep):
        return np.zeros((0, 2))
    cy_cx = np.asarray(ndimage.center_of_mass(mask, lab, keep), dtype=np.float64).reshape(-1, 2)
    return cy_cx[:, ::-1].copy()


def _outside_ignored(xy: np.ndarray, scores: np.ndarray, label: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Drop candidates ``(n, 2)`` ``[x, y]`` whose pixel of ``label`` is :data:`pixer.labels.discs.IGNORE`."""
    label = np.asarray(label)
    if not len(xy) or not (label == IGNORE).any():
        return xy, scores
    col = np.clip(np.rint(xy[:, 0]).astype(np.int64), 0, label.shape[1] - 1)
    row = np.clip(np.rint(xy[:, 1]).astype(np.int64), 0, label.shape[0] - 1)
    keep = label[row, col] != IGNORE
    return xy[keep], scores[keep]


def calibrate_pick_threshold(
    model: torch.nn.Module,
    samples: Sequence[tuple[np.ndarray, np.ndarray]],
    diameter_px: float,
    tile: int = 512,
    stride: int = 256,
    device: str | torch.device = "cpu",
    max_picks_per_empty: float = 1.0,
) -> dict | None:
    """F1-optimal pick threshold of ``model`` on labelled micrographs.

    Parameters
    ----------
    model
        Segmentation network (logits ``(b, 1, h, w)``).
    samples
        ``[(image (h, w) float32 normalised, label (h, w)), ...]`` at the
        model's pixel size: held-out validation micrographs.
    diameter_px
        Particle diameter in pixels of these images (matching radius: half).
    tile, stride
        Inference tiles, pixels (as ``pixer pick``).
    max_picks_per_empty
        On samples with an empty label, the most picks per micrograph (mean)
        the cut may leave.

    Returns
    -------
    dict or None
        ``value`` (the cut; picks strictly above it are kept), ``f1``,
        ``precision``, ``recall`` at it (on the labelled micrographs),
        ``f1_cut`` (the F1-optimal cut), ``empty_cut`` (the least cut meeting
        ``max_picks_per_empty``, or None without empty samples),
        ``picks_per_empty`` at ``value``, ``null`` (with empty samples:
        ``grid``, ``density`` from :func:`pixer.pick.threshold.null_density`,
        ``area``, their area in particle areas, and ``kappa``, their spread between
        micrographs from :func:`pixer.pick.threshold.null_overdispersion`; else None),
        ``n_micrographs``, ``n_empty``, ``n_true``, ``n_candidates``; None when the labelled samples hold fewer
        than :data:`MIN_CALIBRATION_PARTICLES` particles.
    """
    from pixer.evaluate.metrics import evaluate
    from pixer.pick.localmax import grid_local_maxima
    from pixer.pick.picker import probability_map
    from pixer.pick.threshold import (
        CANDIDATE_FLOOR,
        NULL_GRID,
        calibrated_threshold,
        null_density,
        null_overdispersion,
    )

    cands, truth, empty = [], [], []
    empty_areas = []  # particle areas
    was_training = model.training
    model.eval()
    try:
        for i, (image, label) in enumerate(samples):
            centres = label_centres(label)
            if not len(centres):
                empty.append(str(i))
                empty_areas.append(float(np.asarray(image).size) / float(diameter_px) ** 2)
            truth.append(pd.DataFrame({"micrograph": str(i), "x": centres[:, 0], "y": centres[:, 1]}))
            prob = probability_map(np.asarray(image, np.float32), model, tile, stride, device=device)
            xy, scores = grid_local_maxima(prob, diameter_px, min_score=CANDIDATE_FLOOR)
            xy, scores = _outside_ignored(xy, scores, label)
            cands.append(pd.DataFrame({"micrograph": str(i), "x": xy[:, 0], "y": xy[:, 1], "score": scores}))
    finally:
        model.train(was_training)
    truth_df = pd.concat(truth, ignore_index=True) if truth else pd.DataFrame()
    if len(truth_df) < MIN_CALIBRATION_PARTICLES:
        return None
    cand_df = pd.concat(cands, ignore_index=True)
    on_empty = cand_df["micrograph"].isin(empty)
    labelled = cand_df[~on_empty]
    f1_cut, _ = calibrated_threshold(labelled, truth_df, diameter_px)
    empty_cut, null = None, None
    empty_scores = np.sort(cand_df.loc[on_empty, "score"].to_numpy())[::-1]
    if empty:
        per_empty = [cand_df.loc[cand_df["micrograph"] == i, "score"].to_numpy() for i in empty]
        null = dict(grid=list(NULL_GRID), density=null_density(empty_scores, sum(empty_areas)),
                    area=round(sum(empty_areas), 3), kappa=null_overdispersion(per_empty, empty_areas))
        # least cut leaving at most floor(max × n_empty) picks on the empty micrographs
        keep = int(np.floor(max_picks_per_empty * len(empty)))
        empty_cut = float(empty_scores[keep]) if keep < len(empty_scores) else CANDIDATE_FLOOR
    value = max(f1_cut, empty_cut or 0.0)
    at = evaluate(labelled[labelled["score"] > value], truth_df, diameter_px=diameter_px)
    return dict(value=round(float(value), 6), f1=float(at["f1"]), precision=float(at["precision"]),
                recall=float(at["recall"]), f1_cut=round(float(f1_cut), 6),
                empty_cut=None if empty_cut is None else round(empty_cut, 6),
                picks_per_empty=float((empty_scores > value).sum() / len(empty)) if empty else None, null=null,
                n_micrographs=len(samples), n_empty=len(empty), n_true=int(len(truth_df)),
                n_candidates=int(len(cand_df)))
