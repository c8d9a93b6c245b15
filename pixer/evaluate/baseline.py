"""Chance level: an image-blind picker to read F1 against.

Where particles are packed densely, matching within 0.5 × diameter rewards any
regular tiling of the micrograph: a hexagonal lattice of picks one diameter
apart, placed without looking at the image, reaches F1 ≈ 0.6 on the CryoPPP
masks of EMPIAR-10059 and 10947 (docs/real_data.md, "Chance level"). A picker
is only as good as its distance above that. :func:`chance_level` scores such
lattices at several spacings against the truth with the same evaluator
(:func:`pixer.evaluate.evaluate`) and reports the best; ``pixer benchmark
--peers lattice`` adds it as a row of the comparison table.

Units: pixels of the micrographs (the caller converts Å).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from pixer.evaluate.metrics import evaluate
from pixer.io.micrographs import read_micrograph

__all__ = ["LATTICE_SPACINGS", "chance_level", "hex_lattice", "lattice_picks", "micrograph_shapes"]

#: Lattice spacings tried by :func:`chance_level`, as fractions of the particle diameter.
LATTICE_SPACINGS = (0.6, 0.7, 0.8, 0.9, 1.0, 1.1, 1.2)


def hex_lattice(shape: tuple[int, int], spacing_px: float, edge_px: float = 0.0) -> np.ndarray:
    """Points of a hexagonal lattice covering a micrograph.

    Parameters
    ----------
    shape
        ``(h, w)`` micrograph size in pixels.
    spacing_px
        Distance between neighbouring points in pixels (> 0).
    edge_px
        Keep points at least this far from every edge (pixel centres ``0 .. w − 1``).

    Returns
    -------
    np.ndarray
        ``(n, 2)`` float64 ``[x = column, y = row]``; rows ``spacing · √3/2`` apart,
        every other row shifted by half a spacing. Empty when nothing fits.
    """
    if not spacing_px > 0:
        raise ValueError(f"spacing_px must be > 0, got {spacing_px}")
    h, w = int(shape[0]), int(shape[1])
    ys = np.arange(edge_px, h - 1 - edge_px + 1e-9, spacing_px * np.sqrt(3.0) / 2.0)
    rows = []
    for i, y in enumerate(ys):
        xs = np.arange(edge_px + (spacing_px / 2.0 if i % 2 else 0.0), w - 1 - edge_px + 1e-9, spacing_px)
        rows.append(np.stack([xs, np.full_like(xs, y)], axis=1))
    return np.concatenate(rows) if rows else np.zeros((0, 2))


def micrograph_shapes(paths: Iterable[str | os.PathLike], apix: float | None = None) -> dict[str, tuple[int, int]]:
    """File name → ``(h, w)`` in pixels, from the headers (MRC is memory-mapped, not read).

    ``apix`` is passed to the reader for formats without a pixel size (PNG, JPEG).
    """
    return {Path(p).name: tuple(read_micrograph(p, apix=apix, raw=True).data.shape) for p in paths}


def lattice_picks(shapes: Mapping[str, tuple[int, int]], spacing_px: float, edge_px: float = 0.0) -> pd.DataFrame:
    """:func:`hex_lattice` on every micrograph, as a picks table.

    Parameters
    ----------
    shapes
        Micrograph name → ``(h, w)`` in pixels.
    spacing_px, edge_px
        As for :func:`hex_lattice`.

    Returns
    -------
    pandas.DataFrame
        ``micrograph``, ``x``, ``y``, ``score`` (1.0: the lattice has no ranking).
    """
    frames = []
    for name, shape in shapes.items():
        xy = hex_lattice(shape, spacing_px, edge_px)
        frames.append(pd.DataFrame({"micrograph": name, "x": xy[:, 0], "y": xy[:, 1], "score": 1.0}))
    if not frames:
        return pd.DataFrame({"micrograph": pd.Series(dtype=str), "x": [], "y": [], "score": []})
    return pd.concat(frames, ignore_index=True)


def chance_level(truth: pd.DataFrame, shapes: Mapping[str, tuple[int, int]], diameter_px: float,
                 spacings: tuple[float, ...] = LATTICE_SPACINGS, edge_fraction: float = 0.5,
                 radius_fraction: float = 0.5) -> dict:
    """F1 of image-blind hexagonal lattices against ``truth``, the best over spacings.

    Parameters
    ----------
    truth
        True centres: ``micrograph``, ``x``, ``y`` (micrograph pixels).
    shapes
        Micrograph name → ``(h, w)`` in pixels, every micrograph the truth covers
        (micrographs without truth count as having no particles).
    diameter_px
        Particle diameter in pixels.
    spacings
        Lattice spacings as fractions of the diameter.
    edge_fraction
        Lattice points keep ``edge_fraction × diameter`` from the edges (0.5: a box
        of the particle's size fits).
    radius_fraction
        Matching radius as a fraction of the diameter (as :func:`pixer.evaluate.evaluate`).

    Returns
    -------
    dict
        ``spacing`` (the best, as a fraction of the diameter), ``f1``, ``precision``,
        ``recall``, ``n_picks`` there, ``n_true``, and ``by_spacing`` ``{spacing: f1}``.
    """
    if not diameter_px > 0:
        raise ValueError(f"diameter_px must be > 0, got {diameter_px}")
    by_spacing, best = {}, None
    for s in spacings:
        picks = lattice_picks(shapes, s * diameter_px, edge_fraction * diameter_px)
        m = evaluate(picks, truth, diameter_px=diameter_px, radius_fraction=radius_fraction)
        by_spacing[float(s)] = float(m["f1"])
        if best is None or m["f1"] > best[1]["f1"]:
            best = (float(s), m)
    s, m = best
    return {"spacing": s, "f1": float(m["f1"]), "precision": float(m["precision"]), "recall": float(m["recall"]),
            "n_picks": int(m["n_picks"]), "n_true": int(m["n_true"]), "by_spacing": by_spacing}
