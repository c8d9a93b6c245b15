"""Figures of a run report, returned as PNG bytes to embed in the page.

Matplotlib's object API with the Agg canvas (no pyplot state), as in
:mod:`pixer.evaluate.plots`; the micrograph and PR-curve pictures *are*
:func:`~pixer.evaluate.plots.plot_picks` and
:func:`~pixer.evaluate.plots.plot_pr_curve`, written to a temporary folder and
shrunk for the page.
"""

from __future__ import annotations

import io
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from PIL import Image

from pixer.evaluate.plots import plot_picks, plot_pr_curve

__all__ = ["micrograph_png", "picks_per_micrograph_png", "pr_curve_png", "score_histogram_png"]

#: Widest picture on the page, px (bigger PNGs are shrunk: the page stays a few MB).
MAX_WIDTH = 1000


def _png(fig: Figure, dpi: int = 100) -> bytes:
    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    return buf.getvalue()


def _shrink(path: Path, max_width: int = MAX_WIDTH) -> bytes:
    """A PNG file's bytes, resampled to at most ``max_width`` px wide."""
    with Image.open(path) as im:
        im = im.convert("RGB")
        if im.width > max_width:
            im = im.resize((max_width, round(im.height * max_width / im.width)), Image.Resampling.LANCZOS)
        buf = io.BytesIO()
        im.save(buf, format="PNG", optimize=True)
    return buf.getvalue()


def needs_log_counts(counts: np.ndarray, ratio: float = 20.0) -> bool:
    """True when the tallest bin is over ``ratio`` × the median non-empty bin.

    Parts keep candidates down to a low floor, so on data a model is unsure of a
    pile of faint candidates near the floor would flatten every other bar.
    """
    counts = np.asarray(counts, dtype=np.float64)
    filled = counts[counts > 0]
    return bool(filled.size and counts.max() > ratio * max(1.0, float(np.median(filled))))


def score_histogram_png(
    candidates: np.ndarray, threshold: float | None, matched: np.ndarray | None = None, floor: float | None = None
) -> bytes:
    """Histogram of candidate scores with the run's threshold.

    Parameters
    ----------
    candidates
        ``(n,)`` scores of every stored candidate (or of the picks).
    threshold
        The run's threshold (a vertical line), or None.
    matched
        ``(n,)`` bool, candidate matched a true particle: stacks true and false
        candidates when given.
    floor
        The candidate floor below which nothing was stored (a dotted line).
    """
    s = np.asarray(candidates, dtype=np.float64)
    fig = Figure(figsize=(7, 3.2))
    ax = fig.add_subplot()
    bins = np.linspace(0, 1, 51) if s.size and s.min() >= 0 and s.max() <= 1 else 50
    if matched is None:
        kept = s > threshold if threshold is not None else np.ones(len(s), bool)
        ax.hist([s[~kept], s[kept]], bins=bins, stacked=True, color=["#bbbbbb", "#1f77b4"],
                label=["cut by the threshold", "kept"])  # fmt: skip
    else:
        m = np.asarray(matched, bool)
        ax.hist([s[~m], s[m]], bins=bins, stacked=True, color=["#d62728", "#2ca02c"],
                label=["no true particle", "matches a true particle"])  # fmt: skip
    log = s.size > 0 and needs_log_counts(np.histogram(s, bins=bins)[0])
    if log:
        ax.set_yscale("log")
    if threshold is not None:
        ax.axvline(threshold, color="black", lw=1.5, label=f"threshold {threshold:.3f}")
    if floor is not None:
        ax.axvline(floor, color="grey", lw=1, ls=":", label=f"candidate floor {floor:g}")
    ax.set(xlabel="score", ylabel="candidates (log scale)" if log else "candidates")
    ax.legend(fontsize=8, loc="upper center")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return _png(fig)


def picks_per_micrograph_png(counts: pd.Series) -> bytes:
    """Picks per micrograph, in run order: bars for up to 80 micrographs, else a line.

    Parameters
    ----------
    counts
        Picks per micrograph, indexed by name (shown as the index number).
    """
    n = np.asarray(counts, dtype=np.float64)
    fig = Figure(figsize=(7, 3))
    ax = fig.add_subplot()
    x = np.arange(len(n))
    if len(n) <= 80:
        ax.bar(x, n, color="#1f77b4")
    else:
        ax.plot(x, n, lw=0.8, color="#1f77b4")
    if len(n):
        ax.axhline(np.median(n), color="black", lw=1, ls="--", label=f"median {np.median(n):g}")
        ax.legend(fontsize=8)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set(xlabel="micrograph (# in the table below)", ylabel="picks")
    ax.grid(alpha=0.3, axis="y")
    fig.tight_layout()
    return _png(fig)


def pr_curve_png(precision: np.ndarray, recall: np.ndarray, auprc: float) -> bytes:
    """:func:`~pixer.evaluate.plots.plot_pr_curve` of one precision-recall curve, as PNG bytes."""
    with tempfile.TemporaryDirectory() as tmp:
        path = plot_pr_curve({f"pixer (AUPRC {auprc:.3f})": (precision, recall)}, Path(tmp) / "pr.png")
        return _shrink(path)


def micrograph_png(
    image: np.ndarray,
    picks_xy: np.ndarray,
    truth_xy: np.ndarray | None,
    diameter_px: float,
    radius_px: float,
    title: str,
) -> bytes:
    """:func:`~pixer.evaluate.plots.plot_picks` of one micrograph, shrunk for the page."""
    with tempfile.TemporaryDirectory() as tmp:
        path = plot_picks(image, picks_xy, truth_xy, diameter_px=diameter_px, radius_px=radius_px,
                          path=Path(tmp) / "mic.png", title=title)  # fmt: skip
        return _shrink(path, max_width=800)
