"""Disc labels: paint a filled disc at every particle centre.

The simplest training target for the segmentation network: pixel = 1 inside a
disc around any pick. The disc radius is a *fraction* of the particle radius
(default :data:`DEFAULT_FRACTION`): picks are read from the centres of the
probability blobs, so a label concentrated on the centre separates touching
particles and sharpens the local maxima, while a disc as large as the particle
would merge neighbours.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from pixer.errors import PixerError

#: Label-disc radius as a fraction of the particle radius.
DEFAULT_FRACTION = 0.6

#: Label value of pixels the training loss leaves out (neither particle nor
#: background: e.g. uncertain candidates when a model trains on its own picks).
IGNORE = 255

_CHUNK = 1 << 22  # centre × offset pairs handled at once (bounded memory)


def disc_labels(shape: tuple[int, int], xy: np.ndarray, radius_px: float) -> np.ndarray:
    """Binary image with a filled disc around each centre.

    Parameters
    ----------
    shape
        ``(h, w)`` of the label image, pixels.
    xy
        ``(n, 2)`` float centres in pixels, ``[x, y]`` with x = column and
        y = row of ``label[y, x]``. Centres outside the image still paint the
        part of their disc that falls inside.
    radius_px
        Disc radius, pixels. Pixel ``(r, c)`` is inside when
        ``(c - x)² + (r - y)² <= radius_px²``.

    Returns
    -------
    ``(h, w)`` uint8, 1 inside any disc, 0 elsewhere.
    """
    h, w = int(shape[0]), int(shape[1])
    out = np.zeros((h, w), dtype=np.uint8)
    xy = np.asarray(xy, dtype=np.float64).reshape(-1, 2)
    xy = xy[np.isfinite(xy).all(axis=1)]
    if len(xy) == 0 or radius_px < 0 or h == 0 or w == 0:
        return out
    r = int(math.ceil(radius_px)) + 1
    d = np.arange(-r, r + 1)
    dy, dx = (a.ravel() for a in np.meshgrid(d, d, indexing="ij"))
    r2 = float(radius_px) ** 2
    step = max(1, _CHUNK // len(dy))
    for i in range(0, len(xy), step):
        cx, cy = xy[i : i + step, 0:1], xy[i : i + step, 1:2]
        cols = np.floor(cx).astype(np.int64) + dx  # (m, k)
        rows = np.floor(cy).astype(np.int64) + dy
        keep = ((cols - cx) ** 2 + (rows - cy) ** 2 <= r2) & (rows >= 0) & (rows < h)
        keep &= (cols >= 0) & (cols < w)
        out[rows[keep], cols[keep]] = 1
    return out


def mark_ignored(label: np.ndarray, xy: np.ndarray, radius_px: float) -> np.ndarray:
    """Set the background pixels of ``label`` within ``radius_px`` of any centre to :data:`IGNORE`.

    Parameters
    ----------
    label
        ``(h, w)`` uint8 label (0 background, 1 particle); not modified.
    xy
        ``(n, 2)`` centres ``[x, y]`` in pixels of ``label``.
    radius_px
        Disc radius, pixels.

    Returns
    -------
    ``(h, w)`` uint8: ``label`` with those discs at :data:`IGNORE` where it was 0
    (particle pixels stay 1).
    """
    out = np.array(label, dtype=np.uint8, copy=True)
    out[(disc_labels(out.shape, xy, radius_px) > 0) & (out == 0)] = IGNORE
    return out


def disc_labels_for_picks(
    picks: pd.DataFrame,
    micrograph: str,
    shape: tuple[int, int],
    apix: float,
    diameter_A: float,
    fraction: float = DEFAULT_FRACTION,
    mic_apix: float | None = None,
    apply_origin: bool = True,
) -> np.ndarray:
    """Disc labels for the picks of one micrograph, on a (possibly binned) grid.

    Parameters
    ----------
    picks
        Picks table (``docs/CONTRACTS.md``): columns ``micrograph``, ``x``,
        ``y`` in micrograph pixels; optional ``apix``, ``origin_x_A``,
        ``origin_y_A``.
    micrograph
        Value of the ``micrograph`` column to select. No rows → all-zero labels.
    shape
        ``(h, w)`` of the label grid, pixels at ``apix``.
    apix
        Pixel size of the label grid, Å/px (e.g. the ``apix`` returned by
        :func:`pixer.data.preprocess.prepare`).
    diameter_A
        Particle diameter, Å.
    fraction
        Label radius as a fraction of the particle radius (0.5-0.7 suits
        picking; see module docstring).
    mic_apix
        Pixel size of the pick coordinates, Å/px. Default: the table's
        ``apix`` column for this micrograph, else ``apix`` (coordinates
        already on the label grid).
    apply_origin
        Move each centre by ``-origin_{x,y}_A / mic_apix`` (refined
        translations) where those columns are present and finite.

    Returns
    -------
    ``(h, w)`` uint8 labels. Coordinates map to the grid as
    ``x_grid = x_mic · mic_apix / apix`` (both grids have their origin at pixel 0,
    as for Fourier cropping).
    """
    missing = {"micrograph", "x", "y"} - set(picks.columns)
    if missing:
        source = picks.attrs.get("source", "picks table")
        raise PixerError(f"{source}: missing column(s) {', '.join(sorted(missing))}")
    rows = picks[picks["micrograph"] == micrograph]
    if not (apix > 0 and diameter_A > 0 and fraction > 0):
        raise ValueError(f"apix, diameter_A and fraction must be > 0 ({apix}, {diameter_A}, {fraction})")
    if mic_apix is None:
        col = rows["apix"].dropna() if "apix" in rows.columns else pd.Series(dtype=float)
        mic_apix = float(col.iloc[0]) if len(col) else float(apix)
    x = np.array(rows["x"], dtype=np.float64)
    y = np.array(rows["y"], dtype=np.float64)
    if apply_origin:
        for name, arr in (("origin_x_A", x), ("origin_y_A", y)):
            if name in rows.columns:
                o = rows[name].to_numpy(dtype=np.float64)
                arr -= np.where(np.isfinite(o), o, 0.0) / mic_apix
    scale = mic_apix / apix
    radius_px = fraction * 0.5 * diameter_A / apix
    return disc_labels(shape, np.stack([x * scale, y * scale], axis=1), radius_px)
