"""Choosing the pick threshold: fixed, automatic (against the model's empty-micrograph null, Otsu on
candidate scores, or the model's own cut) or calibrated.

Parts store every candidate above a low floor; the threshold is applied when the parts are
gathered, so a run can be re-thresholded without recomputing. Keeping picks "strictly above"
the threshold matches :func:`pixer.pick.localmax.grid_local_maxima`'s ``min_score``, and greedy
suppression in score order commutes with thresholding, so "floor, then threshold" equals
"threshold" directly.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

#: Scores at or below this are never stored (background speckle). Low, so that a model unsure of
#: a new kind of data (real micrographs for the simulation-trained general model: particles at
#: 0.001-0.05) still ranks every particle-like peak: the precision-recall curve and its best F1
#: come from these candidates, and ``--threshold`` can go down to it without recomputing.
CANDIDATE_FLOOR = 0.001
#: The automatic rule looks only at candidates above this (the background's long tail of faint
#: peaks would otherwise swamp the histogram it splits).
AUTO_SCORE_FLOOR = 0.05
#: Threshold used when the automatic rule finds no clear split.
FALLBACK_THRESHOLD = 0.5
#: Fewest candidates for the automatic rule to trust a histogram.
AUTO_MIN_CANDIDATES = 30
#: Least Otsu separability (between-class / total variance) taken as "bimodal" (a uniform
#: sample gives 0.75, two well separated modes > 0.9).
AUTO_MIN_SEPARABILITY = 0.8
#: The automatic threshold is clamped into this range.
AUTO_RANGE = (0.1, 0.9)
#: Null rule: the most false picks it accepts at its cut, as a fraction of the picks kept there
#: (expected background picks / picks). On empty micrographs unlike the model's calibration ones
#: (no interference, -5 to -20 dB, 1-3 Å/px) the background never looked better than 0.55
#: particles per pick, so 0.3 leaves them to the model's own cut.
NULL_MAX_FDR = 0.3
#: Null rule: the excess of picks over the expected background at the cut must be at least this
#: many standard deviations of that background (Poisson, plus the spread between micrographs the
#: calibration measured: :func:`null_overdispersion`). 4 rather than a single test's 3: the rule
#: takes the best of many cuts, and the diameter search the best of six diameters (at 3, empty
#: micrographs searched at 0.8 × the diameter passed for ~7 particles each).
NULL_MIN_Z = 4.0
#: Score grid (log-spaced from the candidate floor to 1) of the stored background density.
NULL_GRID = tuple(float(f"{t:.6g}") for t in np.logspace(-3, 0, 61))


def null_density(scores: np.ndarray, area: float) -> list[float]:
    """Background candidates per particle area above each score of :data:`NULL_GRID`.

    Parameters
    ----------
    scores
        ``(n,)`` candidate scores on micrographs with no particles.
    area
        Their total area in particle areas: sum of ``h · w / d²`` with ``h, w``
        and the diameter ``d`` in the same pixels.

    Returns
    -------
    list of float
        ``len(NULL_GRID)`` densities (candidates with score strictly above
        each grid value, per particle area), non-increasing.
    """
    if area <= 0:
        raise ValueError(f"null density needs a positive area, got {area}")
    return [round(float(a) / float(area), 6) for a in _above_grid(scores)]


def _above_grid(scores: np.ndarray) -> np.ndarray:
    """How many of ``scores`` lie strictly above each score of :data:`NULL_GRID`, ``(len(NULL_GRID),)``."""
    s = np.sort(np.asarray(scores, dtype=np.float64).reshape(-1))
    return len(s) - np.searchsorted(s, np.asarray(NULL_GRID), side="right")


def null_overdispersion(scores: list[np.ndarray], areas: list[float]) -> list[float]:
    """How much more the background varies between micrographs than Poisson counts would.

    Junk is clumpy and its amount changes from micrograph to micrograph (one has a carbon edge,
    the next none), so the background count of a run of few micrographs spreads far more than
    a Poisson count of the same mean. For each score of :data:`NULL_GRID`, with ``c_i``
    candidates above it on empty micrograph ``i`` of area ``a_i`` (particle areas), densities
    ``d_i = c_i / a_i`` and pooled mean ``μ``, the extra relative variance is
    ``κ = max(0, (var(d_i) − mean(μ / a_i)) / μ²)``; a run of ``M`` similar micrographs expecting
    ``N0`` background picks then has variance ``N0 + κ N0² / M``.

    Parameters
    ----------
    scores
        Per empty micrograph, its ``(n_i,)`` candidate scores.
    areas
        Per empty micrograph, its area in particle areas.

    Returns
    -------
    list of float
        ``len(NULL_GRID)`` values of ``κ`` (0 where no candidate lies above, or with fewer
        than two micrographs).
    """
    if len(scores) != len(areas):
        raise ValueError("null_overdispersion: one area per micrograph")
    grid = np.asarray(NULL_GRID)
    if len(scores) < 2:
        return [0.0] * len(grid)
    a = np.asarray(areas, dtype=np.float64)
    counts = np.array([_above_grid(s) for s in scores], dtype=np.float64)  # (micrographs, grid)
    mu = counts.sum(axis=0) / a.sum()
    dens = counts / a[:, None]
    var = dens.var(axis=0, ddof=1)
    poisson = mu * np.mean(1.0 / a)
    with np.errstate(divide="ignore", invalid="ignore"):
        kappa = np.where(mu > 0, (var - poisson) / mu**2, 0.0)
    return [round(float(k), 6) for k in np.clip(kappa, 0.0, None)]


def _on_grid(null: dict, key: str, scores: np.ndarray, right: float | None = None) -> np.ndarray:
    """``null[key]`` (stored per score of ``null["grid"]``) at each of ``scores``, log-linear
    between grid points; ``right`` above the grid (default: the last value)."""
    grid = np.log(np.asarray(null["grid"], dtype=np.float64))
    x = np.log(np.clip(scores, np.exp(grid[0]), 1.0))
    return np.interp(x, grid, np.asarray(null[key], dtype=np.float64), right=right)


def _null_kappa(null: dict, scores: np.ndarray) -> np.ndarray:
    """The stored overdispersion ``κ`` at each of ``scores`` (0 when the background stores none)."""
    return _on_grid(null, "kappa", scores) if null.get("kappa") else np.zeros(len(scores))


def _null_expected(null: dict, scores: np.ndarray, area: float) -> np.ndarray:
    """Expected background candidates above each of ``scores`` on ``area`` particle areas
    (the stored density, log-linear between grid points, 0 above the grid)."""
    return _on_grid(null, "density", scores, right=0.0) * area


def _null_curve(scores: np.ndarray, area: float, null: dict, max_fdr: float,
                min_z: float, micrographs: int | None = None) -> tuple[np.ndarray, ...]:
    """Scores in descending order ``s``, picks ``n`` and expected background picks ``n0`` above
    each, their excess ``n − n0``, and which cuts qualify (background ≤ ``max_fdr`` of the picks,
    excess ≥ ``min_z`` σ of the background, between distinct scores). σ² = ``n0 + 1`` (Poisson),
    plus ``κ n0² / micrographs`` when the background stores its overdispersion ``κ``
    (:func:`null_overdispersion`) and the number of micrographs is given."""
    s = np.sort(np.asarray(scores, dtype=np.float64).reshape(-1))[::-1]
    if not len(s) or area <= 0:
        e = np.zeros(0)
        return e, e, e, e, np.zeros(0, bool)
    n = np.arange(1, len(s) + 1, dtype=np.float64)
    n0 = _null_expected(null, s, area)
    excess = n - n0
    var = n0 + 1.0
    if micrographs:
        var = var + _null_kappa(null, s) * n0**2 / float(micrographs)
    ok = (n0 <= max_fdr * n) & (excess >= min_z * np.sqrt(var))
    ok &= np.append(s[1:] < s[:-1], True)  # ties: a cut sits between distinct scores only
    return s, n, n0, excess, ok


def null_particles(scores: np.ndarray, area: float, null: dict,
                   max_fdr: float = NULL_MAX_FDR, min_z: float = NULL_MIN_Z, micrographs: int | None = None) -> float:
    """How many particles the candidates hold beyond the model's background (0 when no cut qualifies).

    The largest excess ``N(t) − N0(t)`` over cuts (see :func:`null_threshold`): an
    estimate of the number of particles the model finds in the run, used to compare
    the same micrographs picked at different diameters.

    Parameters
    ----------
    scores, area, null
        As for :func:`null_threshold`.

    Returns
    -------
    float
        Estimated particles (≥ 0).
    """
    s, n, n0, excess, ok = _null_curve(scores, area, null, max_fdr, min_z, micrographs)
    return float(max(excess.max(), 0.0)) if ok.any() else 0.0


def null_threshold(scores: np.ndarray, area: float, null: dict, max_fdr: float = NULL_MAX_FDR,
                   min_z: float = NULL_MIN_Z, micrographs: int | None = None) -> tuple[float, str] | None:
    """The cut that maximises the F1 estimated against the model's background (null) density.

    Below a cut ``t`` the run keeps ``N(t)`` candidates; micrographs with no
    particles would give ``N0(t) = density(t) · area`` of them (measured by
    ``pixer train`` on empty calibration micrographs:
    :func:`pixer.train.calibrate.calibrate_pick_threshold`). So about
    ``T(t) = N(t) − N0(t)`` of the picks are particles, about
    ``P = max T`` particles are there, and F1(t) ≈ 2 T / (N + P). Only cuts
    where the background is a small part of the picks (``N0 ≤ max_fdr · N``)
    and the excess is significant (``T ≥ min_z · σ``, ``σ² = N0 + 1`` plus
    ``κ N0² / micrographs`` when the background stores its spread between
    micrographs ``κ``: :func:`null_overdispersion`) are allowed, so a run of
    empty micrographs, or of micrographs the model cannot read, gets no cut
    from this rule.

    Parameters
    ----------
    scores
        ``(n,)`` candidate scores of the whole run (above the candidate floor).
    area
        The run's picked area in particle areas (sum over micrographs of
        ``h · w / d²``, inside the edge margin).
    null
        ``{"grid": [...], "density": [...]}`` (:func:`null_density`), optionally
        ``"kappa"`` (:func:`null_overdispersion`).
    micrographs
        How many micrographs ``area`` holds (None: Poisson σ only).

    Returns
    -------
    (threshold, rule) or None
        None when no cut qualifies.
    """
    s, n, n0, excess, ok = _null_curve(scores, area, null, max_fdr, min_z, micrographs)
    total = float(excess.max()) if len(s) else 0.0
    if not ok.any() or total <= 0:
        return None
    f1 = np.where(ok, 2.0 * excess / (n + total), -1.0)
    k = int(np.argmax(f1))
    below = s[k + 1] if k + 1 < len(s) else min(CANDIDATE_FLOOR, s[k])
    t = float(0.5 * (s[k] + below))
    return t, (f"auto: against the model's empty-micrograph background: {int(n[k])} picks, "
               f"~{n0[k]:.0f} expected from background, ~{total:.0f} particles in the run")


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


def auto_threshold(scores: np.ndarray, model_threshold: dict | None = None,
                   area: float | None = None, micrographs: int | None = None) -> tuple[float, str]:
    """The ``--threshold auto`` rule.

    0. A model that stores its background density (``pick_threshold["null"]``:
       candidates per particle area on empty calibration micrographs), given
       the run's ``area``: the cut of :func:`null_threshold`, which estimates
       how many picks are background at each cut. This is what follows a
       model's scores down when the data are harder than its validation set
       (−20 dB, real micrographs), and it stays out of runs whose candidates
       look like the background.
    1. The scores of the local maxima of a well-trained model's map are bimodal
       (background near the floor, particles near 1): Otsu's method splits the
       pooled candidate scores above ``AUTO_SCORE_FLOOR`` (all micrographs) when there are at least
       ``AUTO_MIN_CANDIDATES`` candidates and the separability is at least
       ``AUTO_MIN_SEPARABILITY``, clamped into ``AUTO_RANGE``.
    2. Otherwise a model that stores its own threshold
       (``config.json["pick_threshold"]``: the F1-optimal cut on its held-out
       validation micrographs, written by ``pixer train``;
       :mod:`pixer.train.calibrate`) uses it. This is the usual case for a model
       fine-tuned on a few real micrographs: scores are not bimodal and true
       particles sit at 0.25-0.4.
    3. Else the fixed probability cutoff ``FALLBACK_THRESHOLD`` (0.5).

    Parameters
    ----------
    scores
        ``(n,)`` candidate scores (those at or below :data:`AUTO_SCORE_FLOOR` are ignored).
    model_threshold
        The model's ``pick_threshold`` record (``value``, ``f1``, ``n_true``,
        ``n_micrographs``, optionally ``null``) or None.
    area
        The run's area in particle areas (see :func:`null_threshold`); None
        skips step 0.
    micrographs
        How many micrographs that area holds (the background's spread between
        micrographs, when stored, widens step 0's significance test); None: Poisson only.

    Returns
    -------
    threshold, rule
        The threshold and a one-line description of how it was chosen.
    """
    if model_threshold and model_threshold.get("null") and area:
        found = null_threshold(scores, area, model_threshold["null"], micrographs=micrographs)
        if found is not None:
            return found
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    s = s[s > AUTO_SCORE_FLOOR]
    eta = 0.0
    if len(s) >= AUTO_MIN_CANDIDATES:
        t, eta = otsu_threshold(s)
        if eta >= AUTO_MIN_SEPARABILITY:
            t = float(np.clip(t, *AUTO_RANGE))
            return t, f"auto: Otsu split of {len(s)} candidate scores (separability {eta:.2f})"
    why = (f"only {len(s)} candidates" if len(s) < AUTO_MIN_CANDIDATES
           else f"scores not bimodal, separability {eta:.2f}")
    if model_threshold and model_threshold.get("value") is not None:
        t = float(model_threshold["value"])
        return t, (f"auto: the model's own threshold ({why}; F1 {float(model_threshold.get('f1', float('nan'))):.3f} "
                   f"on {model_threshold.get('n_true', '?')} particles of its "
                   f"{model_threshold.get('n_micrographs', '?')} held-out validation micrographs)")
    return FALLBACK_THRESHOLD, f"auto: fallback {FALLBACK_THRESHOLD} ({why})"


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
