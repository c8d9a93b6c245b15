"""Particle centres from label masks (CryoPPP-style filled discs).

Some ground truths come as images, not coordinates: every particle rendered as
a filled disc on a mask, often at a lower resolution than the micrograph
(CryoPPP masks of EMPIAR-10059 are 256² for 1024² images). Discs touch and
overlap in dense sets, so connected components alone undercount.

What is computed, exactly
-------------------------
* The mask is binarised at half its maximum (8-bit masks with anti-aliased
  edges included).
* The disc radius ``r`` (mask px) is the median over connected components of
  the largest Euclidean distance to the background: an isolated disc and a
  chain of overlapping discs both reach about ``r``.
* Centres are the plateaus of the distance transform that are local maxima
  within a ``(r + 1)``-wide window and at least ``0.5 r`` deep (centroid of
  each plateau), kept greedily from the deepest with at least ``0.6 r``
  between kept centres. A component with no such peak contributes its centroid.
* Centres are scaled to micrograph pixels by ``image shape / mask shape`` (per
  axis, pixel centres mapped to pixel centres).
"""

from __future__ import annotations

import glob
import os
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import ndimage as ndi
from scipy.spatial import cKDTree

from pixer.errors import file_error
from pixer.io.micrographs import read_micrograph

__all__ = ["MASK_SUFFIXES", "is_mask_source", "mask_centres", "mask_radius", "read_mask_truth"]

#: Image files taken as masks when a truth folder holds no coordinate files.
MASK_SUFFIXES = (".png", ".tif", ".tiff", ".mrc", ".jpg", ".jpeg")


def mask_radius(binary: np.ndarray) -> float:
    """Disc radius in mask pixels: median over components of the largest distance to background.

    Parameters
    ----------
    binary
        ``(h, w)`` bool mask.

    Returns
    -------
    float
        Radius in mask pixels, NaN when the mask is empty.
    """
    labels, n = ndi.label(binary)
    if n == 0:
        return float("nan")
    edt = ndi.distance_transform_edt(binary)
    return float(np.median(ndi.maximum(edt, labels, np.arange(1, n + 1))))


def mask_centres(mask: np.ndarray, image_shape: tuple[int, int] | None = None) -> np.ndarray:
    """Particle centres of a disc mask (see the module docstring for the rule).

    Parameters
    ----------
    mask
        ``(h, w)`` label mask, particles > half the maximum.
    image_shape
        ``(H, W)`` of the micrograph the mask labels; centres are scaled to it.
        Default: the mask's own shape.

    Returns
    -------
    numpy.ndarray
        ``(n, 2)`` float64 centres ``[x = column, y = row]`` in micrograph pixels.
    """
    mask = np.asarray(mask, dtype=np.float32)
    if mask.ndim != 2:
        raise ValueError(f"expected a 2D mask, got shape {mask.shape}")
    top = float(mask.max()) if mask.size else 0.0
    binary = mask > 0.5 * top if top > 0 else np.zeros(mask.shape, bool)
    r = mask_radius(binary)
    if not np.isfinite(r):
        return np.zeros((0, 2))
    edt = ndi.distance_transform_edt(binary)
    size = int(2 * np.floor((r + 1) / 2) + 1)
    peaks = (edt >= ndi.maximum_filter(edt, size=size)) & (edt >= 0.5 * r)
    plateaus, n_plateaus = ndi.label(peaks, structure=np.ones((3, 3)))
    index = np.arange(1, n_plateaus + 1)
    centres = np.array(ndi.center_of_mass(peaks, plateaus, index)).reshape(-1, 2)  # (row, col)
    depth = np.asarray(ndi.maximum(edt, plateaus, index), dtype=np.float64).reshape(-1)
    kept = _suppress(centres, depth, 0.7 * r)
    # Components without a deep enough peak (small specks, cut discs at the edge) → centroid.
    comps, n_comps = ndi.label(binary)
    have = set(np.unique(comps[tuple(np.round(kept).astype(int).T)])) if len(kept) else set()
    lonely = [i for i in range(1, n_comps + 1) if i not in have]
    if lonely:
        extra = np.array(ndi.center_of_mass(binary, comps, lonely)).reshape(-1, 2)
        kept = np.vstack([kept, extra])
    h, w = mask.shape
    big_h, big_w = image_shape if image_shape is not None else (h, w)
    sy, sx = big_h / h, big_w / w
    return np.column_stack([(kept[:, 1] + 0.5) * sx - 0.5, (kept[:, 0] + 0.5) * sy - 0.5])


def _suppress(points: np.ndarray, depth: np.ndarray, min_dist: float) -> np.ndarray:
    """Keep points greedily from the deepest, dropping any within ``min_dist`` of a kept one."""
    if len(points) == 0:
        return points.reshape(0, 2)
    order = np.argsort(-depth, kind="stable")
    tree = cKDTree(points)
    alive = np.ones(len(points), bool)
    keep = []
    for i in order:
        if not alive[i]:
            continue
        keep.append(i)
        alive[tree.query_ball_point(points[i], min_dist)] = False
    return points[np.sort(keep)]


def _mask_files(spec: str | os.PathLike) -> list[Path]:
    path = Path(spec)
    if path.is_dir():
        return sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in MASK_SUFFIXES)
    if path.is_file():
        return [path] if path.suffix.lower() in MASK_SUFFIXES else []
    return sorted(Path(p) for p in glob.glob(str(spec)) if Path(p).suffix.lower() in MASK_SUFFIXES)


def read_mask_truth(spec: str | os.PathLike, micrographs: list[Path]) -> pd.DataFrame:
    """Ground truth from a folder (or glob) of masks named like the micrographs.

    Parameters
    ----------
    spec
        Folder, glob or file of masks; a mask pairs with the micrograph of the
        same file stem.
    micrographs
        The micrograph files; their shapes scale the centres.

    Returns
    -------
    pandas.DataFrame
        Particles table (``micrograph`` = the micrograph path as given, ``x``, ``y``
        micrograph pixels) for every micrograph that has a mask.
    """
    masks = {p.stem: p for p in _mask_files(spec)}
    if not masks:
        raise file_error(spec, f"no mask images ({', '.join(MASK_SUFFIXES)}) found")
    rows = []
    for mic in micrographs:
        mask_path = masks.get(Path(mic).stem)
        if mask_path is None:
            continue
        shape = read_micrograph(mic, apix=1.0, blank_ok=True).data.shape  # only its shape
        mask = read_micrograph(mask_path, apix=1.0, blank_ok=True).data
        xy = mask_centres(mask, shape)
        rows.append(pd.DataFrame({"micrograph": str(mic), "x": xy[:, 0], "y": xy[:, 1]}))
    if not rows:
        raise file_error(spec, f"no mask is named like a micrograph (e.g. {Path(micrographs[0]).stem})")
    table = pd.concat(rows, ignore_index=True)
    table.attrs = {"source": str(spec)}
    return table


def is_mask_source(spec: str | os.PathLike) -> bool:
    """Whether ``spec`` names mask images rather than coordinate files."""
    files = _mask_files(spec)
    if not files:
        return False
    path = Path(spec)
    if path.is_dir():
        coord_like = [p for p in path.iterdir() if p.suffix.lower() in (".star", ".box", ".txt", ".csv", ".tsv")]
        return not coord_like
    return True

