"""Pictures for people: precision-recall curves and picks drawn on a micrograph.

Matplotlib is used through its object API with the Agg canvas (no pyplot
global state, safe in worker processes without a display). PNGs are written
atomically.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.collections import EllipseCollection
from matplotlib.figure import Figure
from scipy.ndimage import gaussian_filter

from pixer.evaluate.matching import match_picks
from pixer.io.paths import atomic_path

#: Longest side (px) of the micrograph as drawn; bigger images are block-averaged.
MAX_DISPLAY_SIDE = 2048

__all__ = ["display_image", "plot_picks", "plot_pr_curve"]


def _save(fig: Figure, path: str | os.PathLike, dpi: int) -> Path:
    FigureCanvasAgg(fig)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=dpi)
    return Path(path)


def plot_pr_curve(
    curves: Mapping[str, tuple[np.ndarray, np.ndarray]], path: str | os.PathLike, title: str = ""
) -> Path:
    """Plot one or more precision-recall curves to a PNG.

    Parameters
    ----------
    curves
        ``label -> (precision, recall)``, arrays as from
        :func:`pixer.evaluate.metrics.precision_recall_curve`.
    path
        Output PNG path (written atomically).
    title
        Optional figure title.

    Returns
    -------
    Path
        ``path``.
    """
    fig = Figure(figsize=(5, 5))
    ax = fig.add_subplot()
    for label, (precision, recall) in curves.items():
        p, r = np.asarray(precision, float), np.asarray(recall, float)
        ax.step(np.r_[0.0, r], np.r_[p[:1] if len(p) else [1.0], p], where="pre", label=str(label))
    ax.set(xlabel="recall", ylabel="precision", xlim=(0, 1.02), ylim=(0, 1.02), title=title)
    ax.grid(alpha=0.3)
    if curves:
        ax.legend(loc="lower left")
    fig.tight_layout()
    return _save(fig, path, dpi=120)


def display_image(image: np.ndarray, diameter_px: float, lowpass: bool = True) -> tuple[np.ndarray, int]:
    """Micrograph prepared for display: binned, low-pass filtered, contrast-stretched.

    Parameters
    ----------
    image
        ``(h, w)`` micrograph.
    diameter_px
        Particle diameter in pixels; the Gaussian low-pass has sigma ``d / 10``
        px (in the binned image), enough to show particles and hide noise.
    lowpass
        Apply the low-pass filter.

    Returns
    -------
    shown, bin
        ``(h // bin, w // bin)`` float32 in [0, 1] (1st-99th percentile
        stretch) and the integer binning factor.
    """
    img = np.nan_to_num(np.asarray(image, dtype=np.float32))
    b = max(1, int(np.ceil(max(img.shape) / MAX_DISPLAY_SIDE)))
    if b > 1:
        h, w = (img.shape[0] // b) * b, (img.shape[1] // b) * b
        img = img[:h, :w].reshape(h // b, b, w // b, b).mean(axis=(1, 3))
    if lowpass:
        img = gaussian_filter(img, sigma=max(diameter_px / b / 10.0, 0.5))
    lo, hi = np.percentile(img, [1, 99]) if img.size else (0.0, 1.0)
    return np.clip((img - lo) / (hi - lo if hi > lo else 1.0), 0, 1).astype(np.float32), b


def _circles(ax, xy: np.ndarray, diameter: float, color: str, label: str) -> None:
    if len(xy) == 0:
        return
    sizes = np.full(len(xy), diameter)
    ax.add_collection(
        EllipseCollection(
            sizes, sizes, np.zeros(len(xy)), units="xy", offsets=xy, offset_transform=ax.transData,
            facecolors="none", edgecolors=color, linewidths=0.8, label=label,
        )
    )


def plot_picks(
    image: np.ndarray,
    picks_xy: np.ndarray,
    truth_xy: np.ndarray | None = None,
    *,
    diameter_px: float,
    path: str | os.PathLike,
    lowpass: bool = True,
    radius_px: float | None = None,
    title: str = "",
) -> Path:
    """Draw picks as circles on a low-passed, contrast-stretched micrograph (PNG).

    Without truth every pick is drawn in cyan. With truth, picks are matched
    (:func:`pixer.evaluate.matching.match_picks`, radius ``radius_px`` or
    ``diameter_px / 2``): true positives green, false positives red, missed
    true particles yellow.

    Parameters
    ----------
    image
        ``(h, w)`` micrograph (or probability map).
    picks_xy
        ``(n, 2)`` pick centres, ``[x = column, y = row]`` pixels of ``image``.
    truth_xy
        ``(m, 2)`` true centres in the same pixels, or None.
    diameter_px
        Particle diameter in pixels (circle size, low-pass, matching radius).
    path
        Output PNG path (written atomically).
    lowpass
        Low-pass filter the image for display.
    radius_px
        Matching radius in pixels; default ``diameter_px / 2``.
    title
        Optional title; the counts are appended.

    Returns
    -------
    Path
        ``path``.
    """
    shown, b = display_image(image, diameter_px, lowpass)
    picks = np.asarray(picks_xy, dtype=np.float64).reshape(-1, 2)
    h, w = shown.shape
    fig = Figure(figsize=(8, 8 * h / max(w, 1)))
    ax = fig.add_axes((0, 0, 1, 1))
    ax.imshow(shown, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    d = diameter_px / b
    # Pixel centres sit at integer coordinates in imshow; binning shifts them by (b - 1) / 2.
    to_shown = lambda xy: (xy - (b - 1) / 2.0) / b
    if truth_xy is None:
        _circles(ax, to_shown(picks), d, "cyan", "picks")
        counts = f"{len(picks)} picks"
    else:
        truth = np.asarray(truth_xy, dtype=np.float64).reshape(-1, 2)
        pi, ti = match_picks(picks, truth, radius_px if radius_px is not None else diameter_px / 2)
        tp = np.zeros(len(picks), bool)
        tp[pi] = True
        found = np.zeros(len(truth), bool)
        found[ti] = True
        _circles(ax, to_shown(truth[~found]), d, "yellow", "missed")
        _circles(ax, to_shown(picks[~tp]), d, "red", "false positive")
        _circles(ax, to_shown(picks[tp]), d, "lime", "true positive")
        counts = f"TP {tp.sum()}  FP {(~tp).sum()}  missed {(~found).sum()}"
    ax.set(xlim=(-0.5, w - 0.5), ylim=(h - 0.5, -0.5))
    ax.axis("off")
    ax.text(
        0.01, 0.99, f"{title}  {counts}".strip(), transform=ax.transAxes, va="top", ha="left",
        color="white", fontsize=9, bbox={"facecolor": "black", "alpha": 0.6, "pad": 2},
    )
    return _save(fig, path, dpi=max(100, min(200, int(w / 8))))
