"""Precision, recall, F1 and area under the precision-recall curve for picks.

What is computed, exactly
-------------------------
* Picks are matched one-to-one to true particles within a radius
  (:mod:`pixer.evaluate.matching`; default radius = 0.5 x particle diameter,
  inclusive), once, using all picks. A matched pick is a true positive (TP).
* The precision-recall curve sweeps the score threshold over every distinct pick
  score, from high to low. At threshold ``t_k`` the picks with ``score >= t_k``
  are kept (equal scores enter together): ``P_k = TP_k / N_k``,
  ``R_k = TP_k / n_true``, counts **pooled over all micrographs**.
* AUPRC (Topaz convention): ``AP = sum_k (R_k - R_{k-1}) * P_k`` with ``R_0 = 0``,
  a right-endpoint sum over the curve's points, no interpolation.
* Best F1 is the maximum of ``2 P_k R_k / (P_k + R_k)`` over the curve.
* Precision, recall and F1 "at a threshold" (all picks when none is given) use
  the picks with ``score >= threshold`` **re-matched on their own**, so they are
  exact for the pick set one would export; they can be slightly higher than the
  curve's point, which reuses the all-picks matching.

Conventions for empty sets: precision = 1 when there are no picks (nothing was
claimed wrongly), recall = 0 when there is no truth, F1 = 0 when
precision + recall = 0. Picks without a ``score`` column all score 1.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from pixer.errors import PixerError
from pixer.evaluate.matching import match_tables

__all__ = ["average_precision", "evaluate", "precision_recall_curve", "prf"]


def prf(tp: float, n_picks: float, n_true: float) -> tuple[float, float, float]:
    """Precision, recall and F1 from counts, with the module's empty-set conventions."""
    precision = tp / n_picks if n_picks > 0 else 1.0
    recall = tp / n_true if n_true > 0 else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0
    return float(precision), float(recall), float(f1)


def precision_recall_curve(
    scores: np.ndarray, tp: np.ndarray, n_true: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Precision and recall at every distinct score threshold.

    Parameters
    ----------
    scores
        ``(n,)`` pick scores (higher = more confident).
    tp
        ``(n,)`` bool, whether each pick matched a true particle.
    n_true
        Number of true particles (recall denominator).

    Returns
    -------
    precision, recall, thresholds
        ``(k,)`` arrays, ``k`` = number of distinct scores, thresholds in
        decreasing order; point ``i`` keeps the picks with ``score >= thresholds[i]``.
        Recall is non-decreasing along the arrays.
    """
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    tp = np.asarray(tp, dtype=bool).reshape(-1)
    if scores.shape != tp.shape:
        raise ValueError(f"scores {scores.shape} and tp {tp.shape} differ in length")
    if len(scores) == 0:
        return np.zeros(0), np.zeros(0), np.zeros(0)
    order = np.argsort(-scores, kind="stable")
    s, t = scores[order], tp[order]
    cum_tp = np.cumsum(t)
    last_of_tie = np.r_[s[1:] != s[:-1], True]  # the last pick of each group of equal scores
    n_kept = np.flatnonzero(last_of_tie) + 1
    tps = cum_tp[last_of_tie].astype(np.float64)
    precision = tps / n_kept
    recall = tps / n_true if n_true > 0 else np.zeros_like(tps)
    return precision, recall, s[last_of_tie]


def average_precision(precision: np.ndarray, recall: np.ndarray) -> float:
    """Area under the precision-recall curve, Topaz convention.

    ``AP = sum_k (R_k - R_{k-1}) * P_k`` with ``R_0 = 0``, over the points of
    :func:`precision_recall_curve` in decreasing-threshold order. A perfect
    ranking gives ``AP = max recall``; a random one about ``precision * max recall``.
    """
    precision = np.asarray(precision, dtype=np.float64)
    recall = np.asarray(recall, dtype=np.float64)
    if len(recall) == 0:
        return 0.0
    return float(np.sum(np.diff(recall, prepend=0.0) * precision))


def _per_micrograph(kept: pd.DataFrame, n_true: pd.Series) -> pd.DataFrame:
    """Counts and P/R/F1 per micrograph (truth names; picks-only micrographs too)."""
    grouped = kept.groupby("truth_micrograph")["tp"]
    table = pd.DataFrame({"n_picks": grouped.size(), "tp": grouped.sum()})
    table = table.join(n_true.rename("n_true"), how="outer").fillna(0).astype(int)
    rows = [prf(r.tp, r.n_picks, r.n_true) for r in table.itertuples()]
    table[["precision", "recall", "f1"]] = np.array(rows).reshape(-1, 3)
    table.index.name = "micrograph"
    return table.reset_index()[["micrograph", "n_picks", "n_true", "tp", "precision", "recall", "f1"]]


def evaluate(
    picks_df: pd.DataFrame,
    truth_df: pd.DataFrame,
    diameter_px: float | None = None,
    *,
    radius_px: float | None = None,
    radius_fraction: float = 0.5,
    threshold: float | None = None,
) -> dict:
    """Score picks against ground truth (see the module docstring for the exact rules).

    Parameters
    ----------
    picks_df
        Picks: ``micrograph``, ``x``, ``y`` (micrograph pixels) and optional ``score``.
    truth_df
        Ground truth: ``micrograph``, ``x``, ``y`` in the same pixels.
    diameter_px
        Particle diameter in pixels; the matching radius is
        ``radius_fraction * diameter_px``.
    radius_px
        Matching radius in pixels (overrides ``diameter_px``).
    radius_fraction
        Matching radius as a fraction of the diameter (default 0.5).
    threshold
        Score threshold for the point metrics; None uses all picks.

    Returns
    -------
    dict
        ``precision``, ``recall``, ``f1``, ``n_picks`` (picks at the threshold),
        ``n_true``, ``tp`` (pooled over micrographs, at the threshold);
        ``best_f1``, ``best_threshold``, ``best_precision``, ``best_recall``,
        ``auprc``, ``radius_px``, ``threshold`` (plain numbers or None); the
        curve as arrays ``precision_curve``, ``recall_curve``, ``thresholds``;
        ``per_micrograph`` =
        DataFrame (micrograph, n_picks, n_true, tp, precision, recall, f1) at
        the threshold.
    """
    if radius_px is None:
        if diameter_px is None:
            raise PixerError("evaluate: give a particle diameter or a matching radius (pixels)")
        radius_px = radius_fraction * float(diameter_px)
    if not radius_px > 0:
        raise PixerError(f"evaluate: matching radius must be > 0 px, got {radius_px}")
    picks = picks_df.copy()
    if "score" not in picks.columns:
        picks["score"] = 1.0
    picks["score"] = pd.to_numeric(picks["score"], errors="coerce").fillna(-np.inf)
    matched, n_true_per = match_tables(picks, truth_df, radius_px)
    n_true = int(n_true_per.sum())
    precision, recall, thresholds = precision_recall_curve(matched["score"], matched["tp"], n_true)
    f1 = np.where(precision + recall > 0, 2 * precision * recall / np.maximum(precision + recall, 1e-300), 0.0)
    best = int(np.argmax(f1)) if len(f1) else None

    if threshold is not None:
        kept, _ = match_tables(picks[picks["score"] >= threshold], truth_df, radius_px)
    else:
        kept = matched
    n_tp = int(kept["tp"].sum())
    p, r, f = prf(n_tp, len(kept), n_true)
    return {
        "precision": p,
        "recall": r,
        "f1": f,
        "tp": n_tp,
        "n_picks": len(kept),
        "n_true": n_true,
        "threshold": threshold,
        "radius_px": float(radius_px),
        "best_f1": float(f1[best]) if best is not None else 0.0,
        "best_threshold": float(thresholds[best]) if best is not None else None,
        "best_precision": float(precision[best]) if best is not None else 1.0,
        "best_recall": float(recall[best]) if best is not None else 0.0,
        "auprc": average_precision(precision, recall),
        "precision_curve": precision,
        "recall_curve": recall,
        "thresholds": thresholds,
        "per_micrograph": _per_micrograph(kept, n_true_per),
    }
