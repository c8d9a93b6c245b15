"""Labels from a 3D reconstruction: re-project the map per particle and paste the masks.

PIXER's label synthesis (Zhang et al. 2019, Fig. 2b): every refined particle is
re-projected at its Euler angles, moved by its refined origin, thresholded and
pasted at its true centre into a label image the shape of its micrograph (or of
a downsampled training grid).

Geometry
--------
* True centre in micrograph pixels: ``x - origin_x_A / apix`` (RELION;
  ``docs/CONTRACTS.md``), ``apix`` the *micrograph* pixel size.
* Label grid: ``(h', w') = crop_shape((h, w), apix, out_apix)`` (the grid
  :func:`pixer.data.preprocess.fourier_crop` makes), pixel ``i`` at micrograph
  position ``i * h / h'``. A centre maps to ``x' = x * w' / w``, ``y' = y * h' / h``.
* The map (voxel ``vol_apix``) is projected straight onto the label grid
  (``scale = label pixel / vol_apix``; Fourier-space resampling in
  :func:`pixer.physics.project.project_matrices`), in a box of
  ``2 * ceil(min(d * vol_apix / px, 1.5 * diameter / px + 8) / 2)`` px, the box
  the simulator uses; the sub-pixel part of the centre is a phase shift.

Threshold: see :mod:`pixer.labels.threshold` (default: 0.1 × each projection's
maximum, the simulator's ground-truth rule; or the projected silhouette of an
iso-surface), holes filled per particle.

Instances: the instance image holds, per pixel, the 1-based index (within the
micrograph's particle records) of the particle owning it; where masks overlap
the particle whose projection is stronger there wins (``scatter_reduce`` amax).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

from pixer.data.preprocess import crop_shape
from pixer.errors import PixerError
from pixer.labels.inputs import check_diameter
from pixer.labels.threshold import LabelThreshold, projection_masks
from pixer.physics.project import fourier_volume, project
from pixer.simulate.density import estimate_diameter

#: particle-pixels (particles × box²) projected in one call
_BATCH_PIXELS = 1 << 23
#: label pixels held at once (micrographs grouped up to this)
_GROUP_PIXELS = 1 << 26

PASTED, SKIPPED = "pasted", "skipped"


@dataclass
class LabelResult:
    """Labels of one micrograph.

    Attributes
    ----------
    name
        Micrograph name (as in ``shapes``).
    label
        ``(h', w')`` uint8, 1 on particles.
    instance
        ``(h', w')`` int32 owner index (1-based row of ``records``, 0 = none), or None.
    records
        One row per particle of this micrograph: ``micrograph``, ``x``, ``y``
        (input coordinates), ``x_true``, ``y_true`` (micrograph px), ``status``
        (``pasted``/``skipped``), ``reason``, ``instance``, ``area_px``.
    apix
        Micrograph pixel size, Å/px.
    label_apix
        Label pixel size, Å/px (mean of the two axes).
    shape
        Micrograph ``(h, w)``, px.
    """

    name: str
    label: np.ndarray
    instance: np.ndarray | None
    records: pd.DataFrame
    apix: float
    label_apix: float
    shape: tuple[int, int]


def label_box(diameter_A: float, map_extent_A: float, px: float) -> int:
    """Projection box (even, px) for a particle of ``diameter_A`` on a ``px`` Å/px grid."""
    return int(2 * math.ceil(min(map_extent_A / px, 1.5 * diameter_A / px + 8) / 2))


def _column(df: pd.DataFrame, name: str, default: float = np.nan) -> np.ndarray:
    if name in df.columns:
        return pd.to_numeric(df[name], errors="coerce").to_numpy(dtype=np.float64)
    return np.full(len(df), default)


def micrograph_apix(name: str, rows: pd.DataFrame, apix: float | Mapping[str, float] | None) -> float:
    """Pixel size (Å/px) of micrograph ``name``: ``apix`` (number or mapping), else its rows' ``apix``."""
    if isinstance(apix, Mapping):
        value = apix.get(name)
    elif apix is not None:
        value = apix
    else:
        col = _column(rows, "apix")
        col = col[np.isfinite(col)]
        value = float(col[0]) if len(col) else None
    if value is None or not float(value) > 0:
        raise PixerError(f"{name}: micrograph pixel size unknown (give apix or an apix column)")
    return float(value)


def particle_records(name: str, rows: pd.DataFrame, mic_apix: float, shape: tuple[int, int],
                     need_angles: bool = True) -> pd.DataFrame:
    """Per-particle records of one ``(h, w)`` micrograph: true centres (micrograph px) and
    skip reasons (coordinates or, with ``need_angles``, angles missing; centre off the micrograph)."""
    h, w = shape
    x, y = _column(rows, "x"), _column(rows, "y")
    ox, oy = np.nan_to_num(_column(rows, "origin_x_A", 0.0)), np.nan_to_num(_column(rows, "origin_y_A", 0.0))
    xt, yt = x - ox / mic_apix, y - oy / mic_apix
    angles = np.stack([_column(rows, a) for a in ("rot", "tilt", "psi")], 1)
    reason = np.full(len(rows), "", dtype=object)
    if need_angles:
        reason[~np.isfinite(angles).all(1)] = "angles missing"
    reason[~(np.isfinite(x) & np.isfinite(y))] = "coordinates missing"
    off = ~((xt >= 0) & (xt < w) & (yt >= 0) & (yt < h))
    reason[(reason == "") & off] = "centre off micrograph"
    return pd.DataFrame({
        "micrograph": name, "x": x, "y": y, "x_true": xt, "y_true": yt,
        "rot": angles[:, 0], "tilt": angles[:, 1], "psi": angles[:, 2],
        "status": np.where(reason == "", PASTED, SKIPPED), "reason": np.where(reason == "", "ok", reason),
        "instance": 0, "area_px": 0,
    })


def _check_columns(particles: pd.DataFrame, need_angles: bool) -> None:
    """The columns label synthesis needs: ``micrograph``, ``x``, ``y`` (and Euler angles)."""
    need = ("micrograph", "x", "y", "rot", "tilt", "psi") if need_angles else ("micrograph", "x", "y")
    missing = [c for c in need if c not in particles.columns]
    if missing:
        source = particles.attrs.get("source", "particles table")
        hint = " (no Euler angles: not a refinement; use disc labels from coordinates)" if "rot" in missing else ""
        raise PixerError(f"{source}: no {', '.join(missing)} column(s){hint}")


def placement_reasons(particles: pd.DataFrame, shapes: Mapping[str, tuple[int, int]],
                      apix: float | Mapping[str, float] | None = None, need_angles: bool = True) -> dict[str, int]:
    """How many particles will be pasted and why the others will be skipped, before any labels are made.

    Parameters
    ----------
    particles
        Particles table (``micrograph``, ``x``, ``y``; optional origins, angles, ``apix``).
    shapes
        Micrograph name -> ``(h, w)`` px (as for :func:`synthesize_labels`).
    apix
        Micrograph pixel size, as for :func:`synthesize_labels`.
    need_angles
        Particles without Euler angles are skipped (re-projection; not for disc labels).

    Returns
    -------
    dict
        Reason -> count over all rows of ``particles``: ``"ok"`` (to be pasted), the
        skip reasons of :func:`particle_records` and ``"unknown micrograph"``.

    Raises
    ------
    PixerError
        When a needed column is missing (as :func:`synthesize_labels`).
    """
    _check_columns(particles, need_angles)
    names = particles["micrograph"].astype(str).to_numpy()
    groups = dict(iter(particles.groupby(names, sort=False)))
    counts: dict[str, int] = {}
    for name, (h, w) in shapes.items():
        rows = groups.get(name)
        if rows is None:
            continue
        rec = particle_records(name, rows, micrograph_apix(name, rows, apix), (int(h), int(w)), need_angles)
        for reason, n in rec["reason"].value_counts().items():
            counts[str(reason)] = counts.get(str(reason), 0) + int(n)
    unknown = int((~pd.Series(names).isin(set(shapes))).sum())
    if unknown:
        counts["unknown micrograph"] = unknown
    return counts


def unknown_micrograph_records(particles: pd.DataFrame, shapes: Mapping[str, tuple[int, int]]) -> pd.DataFrame:
    """Records (skipped, ``unknown micrograph``) for particles whose micrograph is not in ``shapes``."""
    rows = particles[~particles["micrograph"].astype(str).isin(set(shapes))]
    x, y = _column(rows, "x"), _column(rows, "y")
    return pd.DataFrame({
        "micrograph": rows["micrograph"].astype(str).to_numpy(), "x": x, "y": y, "x_true": np.nan,
        "y_true": np.nan, "rot": _column(rows, "rot"), "tilt": _column(rows, "tilt"), "psi": _column(rows, "psi"),
        "status": SKIPPED, "reason": "unknown micrograph", "instance": 0, "area_px": 0,
    })


@dataclass
class _Mic:
    name: str
    records: pd.DataFrame
    shape: tuple[int, int]  # label grid
    scale: tuple[float, float]  # (sx, sy) micrograph px -> label px
    apix: float
    label_apix: float
    mic_shape: tuple[int, int] = (0, 0)
    offset: int = 0


def synthesize_labels(
    particles: pd.DataFrame,
    volume: np.ndarray | torch.Tensor,
    vol_apix: float,
    shapes: Mapping[str, tuple[int, int]],
    apix: float | Mapping[str, float] | None = None,
    out_apix: float | None = None,
    threshold: LabelThreshold | None = None,
    instance: bool = False,
    device: str | torch.device = "cpu",
    batch: int = 1024,
    diameter_A: float | None = None,
    progress: bool = False,
) -> Iterator[LabelResult]:
    """Re-project the map for every particle and paste the thresholded projections.

    Parameters
    ----------
    particles
        Particles table (``docs/CONTRACTS.md``): ``micrograph``, ``x``, ``y``
        (micrograph px), ``rot``/``tilt``/``psi`` (degrees), optional
        ``origin_x_A``/``origin_y_A`` (Å; absent or NaN = 0) and ``apix``.
    volume
        ``(d, d, d)`` map ``vol[z, y, x]``, protein positive.
    vol_apix
        Voxel size of ``volume``, Å (any; projections are resampled).
    shapes
        Micrograph name -> ``(h, w)`` in micrograph pixels. One result per entry,
        in this order (micrographs without particles give empty labels); particles
        of other micrographs are ignored (see :func:`unknown_micrograph_records`).
    apix
        Micrograph pixel size, Å/px: a number, a name -> value mapping, or None
        for the table's ``apix`` column.
    out_apix
        Label pixel size, Å/px (default: the micrograph's; never finer).
    threshold
        :class:`LabelThreshold` (default: 0.1 × each projection's maximum, holes filled).
    instance
        Also return the instance image.
    device
        Torch device for projection and pasting.
    batch
        Particles projected per call (fewer when boxes are large).
    diameter_A
        Particle diameter, Å, setting the projection box (default: estimated from the map).
    progress
        Show a progress bar (particles).

    Yields
    ------
    LabelResult
        One per micrograph of ``shapes``.
    """
    threshold = threshold or LabelThreshold()
    _check_columns(particles, need_angles=True)
    vol = torch.as_tensor(np.asarray(volume, dtype=np.float32) if not torch.is_tensor(volume) else volume,
                          dtype=torch.float32)
    if vol.ndim != 3 or len(set(vol.shape)) != 1:
        raise PixerError(f"map must be cubic (d, d, d), got shape {tuple(vol.shape)}")
    if not vol_apix > 0:
        raise PixerError(f"map voxel size must be > 0 Å, got {vol_apix}")
    d = vol.shape[0]
    diameter_A = estimate_diameter(vol.cpu().numpy(), vol_apix) if diameter_A is None else float(diameter_A)
    if threshold.mode == "iso":
        vol = (vol > threshold.iso_level).to(torch.float32)
        if not vol.any():
            raise PixerError(f"no voxel of the map exceeds the iso level {threshold.iso_level:g}")
    fvol = fourier_volume(vol.to(device))
    groups = dict(iter(particles.groupby(particles["micrograph"].astype(str).to_numpy(), sort=False)))
    mics = []
    for name, (h, w) in shapes.items():
        rows = groups.get(name, particles.iloc[:0])
        mic_apix = micrograph_apix(name, rows, apix)
        check_diameter(diameter_A, {name: (h, w)}, mic_apix)
        hl, wl = crop_shape((int(h), int(w)), mic_apix, out_apix) if out_apix else (int(h), int(w))
        mics.append(_Mic(name, particle_records(name, rows, mic_apix, (int(h), int(w))), (hl, wl),
                         (wl / w, hl / h), mic_apix, 0.5 * mic_apix * (h / hl + w / wl), (int(h), int(w))))
    bar = tqdm(total=sum(len(m.records) for m in mics), desc="labels", unit="particle", disable=not progress)
    ctx = dict(fvol=fvol, d=d, vol_apix=vol_apix, diameter_A=diameter_A, threshold=threshold, instance=instance,
               device=torch.device(device), batch=batch, bar=bar)
    group: list[_Mic] = []
    try:
        for mic in mics:
            if group and sum(m.shape[0] * m.shape[1] for m in group) + mic.shape[0] * mic.shape[1] > _GROUP_PIXELS:
                yield from _process_group(group, ctx)
                group = []
            group.append(mic)
        if group:
            yield from _process_group(group, ctx)
    finally:
        bar.close()


def _process_group(group: list[_Mic], ctx: dict) -> Iterator[LabelResult]:
    """Paste all particles of a group of micrographs into one flat canvas."""
    dev = ctx["device"]
    offset = 0
    for m in group:
        m.offset = offset
        offset += m.shape[0] * m.shape[1]
    label = torch.zeros(offset, dtype=torch.uint8, device=dev)
    # the particles to paste, as flat arrays over the group
    parts = []
    for k, m in enumerate(group):
        r = m.records
        i = np.flatnonzero(r["status"].to_numpy() == PASTED)
        parts.append(pd.DataFrame({
            "k": k, "i": i, "cx": r["x_true"].to_numpy()[i] * m.scale[0], "cy": r["y_true"].to_numpy()[i] * m.scale[1],
            "rot": r["rot"].to_numpy()[i], "tilt": r["tilt"].to_numpy()[i], "psi": r["psi"].to_numpy()[i],
            "px": round(m.label_apix, 9), "h": m.shape[0], "w": m.shape[1], "off": m.offset}))
    todo = pd.concat(parts, ignore_index=True)
    scattered = []
    area = np.zeros(len(todo), dtype=np.int64)
    for px, sub in todo.groupby("px", sort=False):
        box = label_box(ctx["diameter_A"], ctx["d"] * ctx["vol_apix"], px)
        step = max(1, min(ctx["batch"], _BATCH_PIXELS // (box * box)))
        for s in range(0, len(sub), step):
            chunk = sub.iloc[s:s + step]
            flat, vals, ids, n_px = _paste_chunk(chunk, px, box, ctx, label)
            area[chunk.index.to_numpy()] = n_px
            if ctx["instance"]:
                scattered.append((flat, vals, ids))
            ctx["bar"].update(len(chunk))
    owner = _owners(scattered, offset, dev) if ctx["instance"] else None
    for k, m in enumerate(group):
        sel = todo["k"].to_numpy() == k
        m.records["area_px"] = 0
        m.records.loc[m.records.index[todo["i"].to_numpy()[sel]], "area_px"] = area[sel]
        m.records["instance"] = np.where(m.records["status"] == PASTED, np.arange(1, len(m.records) + 1), 0)
        n = m.shape[0] * m.shape[1]
        inst = None if owner is None else owner[m.offset:m.offset + n].reshape(m.shape).cpu().numpy()
        yield LabelResult(m.name, label[m.offset:m.offset + n].reshape(m.shape).cpu().numpy(), inst, m.records,
                          m.apix, m.label_apix, m.mic_shape)


def _owners(scattered: list, size: int, dev: torch.device) -> torch.Tensor:
    """Owner per pixel: the particle with the strongest projection there (ties: highest id)."""
    owner = torch.zeros(size, dtype=torch.int32, device=dev)
    if not scattered:
        return owner
    flat, vals, ids = (torch.cat(t) for t in zip(*scattered))
    strength = torch.full((size,), -math.inf, device=dev).scatter_reduce_(0, flat, vals, reduce="amax")
    win = vals >= strength[flat]
    return owner.scatter_reduce_(0, flat[win], ids[win], reduce="amax")


def _paste_chunk(chunk: pd.DataFrame, px: float, box: int, ctx: dict, label: torch.Tensor):
    """Project the particles of ``chunk`` on a ``px`` Å/px grid and set their mask pixels in ``label``.

    Returns the flat indices, projection values and 1-based record ids of the
    mask pixels (for instances) and each particle's pasted area in px.
    """
    dev = ctx["device"]

    def col(name, dtype=torch.float64):
        return torch.as_tensor(np.array(chunk[name].to_numpy()), dtype=dtype, device=dev)

    cx, cy = col("cx"), col("cy")
    ix, iy = torch.floor(cx), torch.floor(cy)
    frac = torch.stack([cx - ix, cy - iy], 1)
    img = project(ctx["fvol"], col("rot"), col("tilt"), col("psi"), -frac, size=box,
                  scale=px / ctx["vol_apix"])  # particle centre at box//2 + frac
    mask = projection_masks(img, ctx["threshold"], ctx["vol_apix"])
    y0, x0 = iy.long() - box // 2, ix.long() - box // 2  # box corners on the label grid
    h, w, off = (col(name, torch.int64) for name in ("h", "w", "off"))
    k = torch.arange(box, device=dev)
    inside_r = (y0[:, None] + k >= 0) & (y0[:, None] + k < h[:, None])
    inside_c = (x0[:, None] + k >= 0) & (x0[:, None] + k < w[:, None])
    mask = mask & inside_r[:, :, None] & inside_c[:, None, :]
    b, r, c = mask.nonzero(as_tuple=True)  # mask pixels inside the micrograph
    flat = (off + y0 * w + x0)[b] + r * w[b] + c
    label[flat] = 1
    n_px = torch.bincount(b, minlength=len(chunk)).cpu().numpy()
    if not ctx["instance"]:
        return flat, None, None, n_px
    ids = (col("i", torch.int32) + 1)[b]
    vals = img[b, r, c].to(torch.float32).clamp_min(1e-30)
    return flat, vals, ids, n_px

__all__ = [
    "LabelResult",
    "label_box",
    "placement_reasons",
    "synthesize_labels",
    "unknown_micrograph_records",
]
