"""Simulate one cryo-EM micrograph with known particle positions and orientations.

Image model (all arrays ``(h, w)``, ``img[y, x]``)::

    image = signal + background + noise
    signal = -(clean + aggregates) * CTF          # protein darker than ice
    clean  = sum of CTF-free projections of the particles (positive density)

* **Contrast**: micrographs follow real data, protein is *darker* than the ice
  (``signal`` is the negated CTF-modulated projection; the CTF itself has RELION's
  sign, positive at low frequency).
* **SNR** (dB) ``= 10 log10(P_signal / sigma_noise^2)`` with ``P_signal`` the variance
  of the particles' CTF-modulated signal (without aggregates or background) over the
  pixels of the particle ``mask``. For a micrograph without particles the noise level
  is that of the same settings, estimated from 8 random views.
* **mask** marks pixels where a particle's CTF-free projection exceeds
  ``mask_threshold`` (default 0.1) times that particle's projection maximum,
  holes filled.
* **junk_mask** marks interference: carbon, contaminant blobs and aggregates (not
  the ice gradient, which covers everything). No particle centre lies within a
  particle radius of junk, except on carbon when ``interference["on_carbon"]`` (a
  probability per micrograph, default 0) lets particles adsorb to the carbon film as
  well; they are then particles like any other (mask, truth).
* **Interference** (``interference`` dict, see :data:`DEFAULT_INTERFERENCE`):
  ``carbon`` and ``ice_gradient`` are probabilities, ``contaminants`` and
  ``aggregates`` Poisson means per micrograph. ``debris`` (not in the defaults: 0) is the
  Poisson mean of small dark specks and strands, 0.1-1.5 particle diameters, darker
  than the particles at low SNR (a common false positive on real micrographs). Amplitudes
  scale with the noise level.
* Coordinates: ``x, y`` (``rlnCoordinateX/Y``) are integers; the true centre is
  ``x - origin_x_A / apix`` with origins of a few Å (CONTRACTS.md).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import scipy.fft
import scipy.ndimage as ndi
import torch

from pixer.physics.ctf import ctf_2d
from pixer.physics.project import FourierVolume, fourier_volume, project

DEFAULT_INTERFERENCE = {"carbon": 0.3, "ice_gradient": 1.0, "contaminants": 0.8, "aggregates": 1.0}


@dataclass
class SimResult:
    """Output of :func:`simulate_micrograph` (arrays ``(h, w)``)."""

    image: np.ndarray  # float32 noisy micrograph
    clean: np.ndarray  # float32 sum of CTF-free particle projections
    signal: np.ndarray  # float32 -(particles + aggregates) * CTF
    background: np.ndarray  # float32 carbon, ice gradient, contaminants
    mask: np.ndarray  # uint8 particle mask
    junk_mask: np.ndarray  # uint8 interference mask
    particles: pd.DataFrame  # CONTRACTS.md particle table
    params: dict = field(default_factory=dict)  # defocus, noise sigma, signal power, ...


def random_euler(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``n`` orientations uniform on SO(3): RELION angles in degrees.

    ``rot, psi`` uniform in [-180, 180); ``tilt = arccos(u)``, ``u`` uniform in [-1, 1].
    """
    rot = rng.uniform(-180.0, 180.0, n)
    tilt = np.degrees(np.arccos(rng.uniform(-1.0, 1.0, n)))
    psi = rng.uniform(-180.0, 180.0, n)
    return rot, tilt, psi


def _place(rng, n, shape, margin, min_dist, allowed_dist, radius, tries=40):
    """Dart throwing: up to ``n`` centres (cx, cy) px, ``min_dist`` apart, away from junk."""
    h, w = shape
    pts: list[tuple[float, float]] = []
    cand = rng.uniform((margin, margin), (w - margin, h - margin), size=(max(n, 1) * tries, 2))
    for cx, cy in cand:
        if len(pts) >= n:
            break
        if allowed_dist[min(int(cy), h - 1), min(int(cx), w - 1)] < radius:
            continue
        if pts and np.min(np.hypot(*(np.asarray(pts) - (cx, cy)).T)) < min_dist:
            continue
        pts.append((cx, cy))
    return np.asarray(pts, dtype=np.float64).reshape(-1, 2)


def _paste(canvas, boxes, corners, mask=None, thr=None):
    """Add ``(n, b, b)`` boxes at integer top-left ``corners`` (x0, y0), clipped."""
    h, w = canvas.shape
    b = boxes.shape[-1]
    for box, (x0, y0) in zip(boxes, corners):
        xs, ys = max(0, -x0), max(0, -y0)
        xe, ye = min(b, w - x0), min(b, h - y0)
        if xe <= xs or ye <= ys:
            continue
        sub = box[ys:ye, xs:xe]
        canvas[y0 + ys:y0 + ye, x0 + xs:x0 + xe] += sub
        if mask is not None:
            mask[y0 + ys:y0 + ye, x0 + xs:x0 + xe] |= sub > thr * box.max()


def _smooth_field(rng, shape, scale_px):
    """Zero-mean, unit-std low-frequency random field (Gaussian-filtered noise)."""
    h, w = shape
    f = max(1, int(scale_px // 8))
    small = rng.standard_normal((h // f + 2, w // f + 2))
    small = ndi.gaussian_filter(small, scale_px / f / 2, mode="wrap")
    big = ndi.zoom(small, f, order=1)[:h, :w]
    return (big - big.mean()) / (big.std() + 1e-12)


def _interference(rng, shape, apix, diameter_px, cfg):
    """Background ``(h, w)`` in noise-sigma units, and two junk masks (bools): the carbon film and
    everything else (contaminants, debris)."""
    h, w = shape
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    bg = np.zeros(shape, np.float32)
    carbon_film = np.zeros(shape, bool)
    other = np.zeros(shape, bool)
    if rng.random() < cfg.get("ice_gradient", 0.0):
        a = rng.uniform(0, 2 * np.pi)
        ramp = (np.cos(a) * (xx - w / 2) + np.sin(a) * (yy - h / 2)) / max(h, w)
        bg -= rng.uniform(0.2, 0.6) * ramp + 0.15 * _smooth_field(rng, shape, max(h, w) / 4)
    if rng.random() < cfg.get("carbon", 0.0):
        # a large disc whose curved edge crosses the image; carbon covers 15-40 %
        a = rng.uniform(0, 2 * np.pi)
        big_r = rng.uniform(1.0, 3.0) * max(h, w)
        depth = rng.uniform(0.15, 0.4) * max(h, w)
        cx = w / 2 + np.cos(a) * (big_r + max(h, w) / 2 - depth)
        cy = h / 2 + np.sin(a) * (big_r + max(h, w) / 2 - depth)
        inside = big_r - np.hypot(xx - cx, yy - cy)  # > 0 on carbon
        carbon = 0.5 * (1 + np.tanh(inside / 2.0))
        texture = _smooth_field(rng, shape, 3.0)
        bg -= carbon * (rng.uniform(0.4, 0.9) + 0.3 * texture)
        carbon_film = inside > -diameter_px / 4
    for _ in range(rng.poisson(cfg.get("contaminants", 0.0))):
        r = rng.uniform(0.6, 2.5) * diameter_px
        cx, cy = rng.uniform(0, w), rng.uniform(0, h)
        e, th = rng.uniform(0.6, 1.0), rng.uniform(0, np.pi)
        u = (xx - cx) * np.cos(th) + (yy - cy) * np.sin(th)
        v = -(xx - cx) * np.sin(th) + (yy - cy) * np.cos(th)
        dist = np.sqrt(u**2 + (v / e) ** 2) - r
        bg -= rng.uniform(2.0, 4.0) * 0.5 * (1 - np.tanh(dist / 3.0))
        bg += 0.6 * np.exp(-(((dist - 4.0) / 3.0) ** 2))  # bright Fresnel fringe
        other |= dist < diameter_px / 4
    if cfg.get("debris", 0.0) > 0:  # no draw when not asked: the random streams stay as they were
        for _ in range(rng.poisson(cfg["debris"])):
            _add_debris(rng, bg, other, diameter_px)
    return bg, carbon_film, other


def _add_debris(rng, bg, junk, diameter_px):
    """One piece of small dark debris (ice or ethane specks, denatured protein, fibres) in place.

    A chain of 1-12 Gaussian beads (σ 0.04-0.12 d) along a random walk with steps of ~1.5 σ,
    so from a compact dot of 0.1-0.3 d to a crooked strand of ~1.5 d; 0.8-3.5 noise σ deep, with a
    faint bright rim (the Fresnel fringe of dense matter). ``bg`` and ``junk`` ``(h, w)`` are
    updated in place; everything within a quarter diameter of it is junk.
    """
    h, w = bg.shape
    sig = rng.uniform(0.04, 0.12) * diameter_px
    k = int(rng.integers(1, 13))
    steps = rng.normal(0.0, 1.0, (k, 2))
    steps = 1.5 * sig * steps / np.maximum(np.linalg.norm(steps, axis=1, keepdims=True), 1e-9)
    # a persistent walk: each step mostly keeps the previous direction
    for i in range(1, k):
        steps[i] = 0.6 * steps[i - 1] + 0.4 * steps[i]
        steps[i] *= 1.5 * sig / max(float(np.linalg.norm(steps[i])), 1e-9)
    beads = np.cumsum(steps, axis=0)
    beads -= beads.mean(axis=0)
    cx, cy = rng.uniform(0, w), rng.uniform(0, h)
    half = int(np.ceil(np.abs(beads).max() + 4 * sig + diameter_px / 4)) + 2
    x0, y0 = int(cx) - half, int(cy) - half
    yy, xx = np.mgrid[y0:y0 + 2 * half + 1, x0:x0 + 2 * half + 1].astype(np.float32)
    dark = np.zeros(yy.shape, np.float32)
    for bx, by in beads:
        dark = np.maximum(dark, np.exp(-((xx - cx - bx) ** 2 + (yy - cy - by) ** 2) / (2 * sig**2)))
    rim = ndi.gaussian_filter(dark, 1.5 * sig) - dark
    amp = rng.uniform(0.8, 3.5)
    patch = -amp * dark + 0.5 * amp * np.clip(rim, 0.0, None)
    near = ndi.distance_transform_edt(dark < 0.2) < diameter_px / 4
    ys, xs = slice(max(0, y0), min(h, y0 + yy.shape[0])), slice(max(0, x0), min(w, x0 + yy.shape[1]))
    sub = (slice(ys.start - y0, ys.stop - y0), slice(xs.start - x0, xs.stop - x0))
    bg[ys, xs] += patch[sub]
    junk[ys, xs] |= near[sub]


def _ctf_filter(image: np.ndarray, apix: float, ctf_kw: dict, pad: int) -> np.ndarray:
    """Periodic-free CTF convolution: zero-pad by ``pad`` px, rfft, crop."""
    h, w = image.shape
    H, W = scipy.fft.next_fast_len(h + 2 * pad), scipy.fft.next_fast_len(w + 2 * pad)
    ctf = ctf_2d((H, W), apix, rfft=True, dtype=torch.float64, **ctf_kw).numpy()
    ft = scipy.fft.rfft2(image, s=(H, W), workers=1)
    return scipy.fft.irfft2(ft * ctf, s=(H, W), workers=1)[:h, :w].astype(np.float32)


def simulate_micrograph(
    volume: np.ndarray | torch.Tensor | FourierVolume,
    vol_apix: float,
    shape: tuple[int, int],
    apix: float,
    n_particles: int,
    snr_db: float,
    rng: np.random.Generator,
    *,
    defocus_range: tuple[float, float] = (10000.0, 25000.0),
    astigmatism: float = 500.0,
    voltage: float = 300.0,
    cs: float = 2.7,
    amp_contrast: float = 0.1,
    interference: dict | bool = True,
    min_distance_A: float | None = None,
    diameter_A: float | None = None,
    mask_threshold: float = 0.1,
    name: str = "mic_0000.mrc",
) -> SimResult:
    """Simulate a micrograph of randomly placed, randomly oriented particles.

    Parameters
    ----------
    volume
        ``(d, d, d)`` map (``vol[z, y, x]``) or a prepared :class:`FourierVolume`.
    vol_apix
        Voxel size of the map, Å (may differ from ``apix``: projections are resampled
        in Fourier space).
    shape
        Micrograph ``(h, w)`` in pixels.
    apix
        Micrograph pixel size, Å/px.
    n_particles
        Particles requested (fewer if they do not fit without overlap).
    snr_db
        Signal-to-noise ratio in dB (see module docstring for the definition).
    rng
        Random generator; everything random comes from it.
    defocus_range
        Uniform range of ``defocus_u`` in Å (underfocus positive).
    astigmatism
        Maximum ``defocus_u - defocus_v`` in Å (uniform in [0, astigmatism]).
    voltage, cs, amp_contrast
        kV, mm, fraction.
    interference
        True for :data:`DEFAULT_INTERFERENCE`, False for none, or a dict overriding it.
    min_distance_A
        Minimum centre distance (default: the particle diameter).
    diameter_A
        Particle diameter in Å (default: estimated from the map).
    mask_threshold
        Fraction of each particle's projection maximum defining the mask.
    name
        Micrograph name written in the ``micrograph`` column.

    Returns
    -------
    SimResult
    """
    from pixer.simulate.density import estimate_diameter

    h, w = shape
    if isinstance(volume, FourierVolume):
        fvol = volume
        if diameter_A is None:
            raise ValueError("diameter_A is required with a FourierVolume")
    else:
        vol_np = np.asarray(volume.cpu().numpy() if torch.is_tensor(volume) else volume, dtype=np.float32)
        fvol = fourier_volume(torch.from_numpy(vol_np), pad=2.0)
        diameter_A = estimate_diameter(vol_np, vol_apix) if diameter_A is None else diameter_A
    cfg = dict(DEFAULT_INTERFERENCE) if interference is True else ({} if interference is False else
                                                                    {**DEFAULT_INTERFERENCE, **interference})
    diam_px = diameter_A / apix
    radius = diam_px / 2
    min_dist = (diameter_A if min_distance_A is None else min_distance_A) / apix
    box = int(2 * math.ceil(min(fvol.size * vol_apix / apix, 1.5 * diam_px + 8) / 2))

    # --- CTF of this micrograph
    du = rng.uniform(*defocus_range)
    dv = du - rng.uniform(0, astigmatism)
    dang = rng.uniform(0.0, 180.0)
    ctf_kw = dict(defocus_u=du, defocus_v=dv, defocus_angle=dang, voltage=voltage, cs=cs, amp_contrast=amp_contrast)

    # --- interference geometry (background in noise units, filled in below)
    bg_unit, carbon_film, other_junk = _interference(rng, shape, apix, diam_px, cfg)
    # particles may sit on the carbon film in this micrograph (no draw when not asked: streams unchanged)
    place_on_carbon = cfg.get("on_carbon", 0.0) > 0 and rng.random() < cfg["on_carbon"]
    n_agg = rng.poisson(cfg.get("aggregates", 0.0))
    agg_centres = rng.uniform((0, 0), (w, h), size=(n_agg, 2))
    agg_sizes = rng.integers(4, 11, size=n_agg)
    agg_members = [c + rng.normal(0, 0.35 * diam_px, size=(k, 2)) for c, k in zip(agg_centres, agg_sizes)]
    agg_xy = np.concatenate(agg_members) if n_agg else np.zeros((0, 2))

    # --- particle positions, orientations, origins
    for (cx, cy), k in zip(agg_centres, agg_sizes):
        r = 0.35 * diam_px * math.sqrt(k) + radius
        y0, y1, x0, x1 = (max(0, int(cy - r)), min(h, int(cy + r) + 1), max(0, int(cx - r)), min(w, int(cx + r) + 1))
        yy, xx = np.mgrid[y0:y1, x0:x1]
        other_junk[y0:y1, x0:x1] |= np.hypot(xx - cx, yy - cy) < r
    junk = carbon_film | other_junk
    keep_out = other_junk if place_on_carbon else junk
    allowed = ndi.distance_transform_edt(~keep_out) if keep_out.any() else np.full(shape, np.inf)
    centres = _place(rng, n_particles, shape, 0.5 * radius, min_dist, allowed, radius)
    n = len(centres)
    rot, tilt, psi = random_euler(rng, n + len(agg_xy))
    origin = rng.normal(0.0, 2.0, size=(n, 2))  # Å
    coords = np.round(centres + origin / apix)
    origin_A = (coords - centres) * apix  # true centre = coord - origin / apix

    # --- project everything in one batched call
    xy = np.concatenate([centres, agg_xy])
    ixy = np.floor(xy).astype(np.int64)
    frac = xy - ixy
    imgs = np.zeros((0, box, box), np.float32)
    if len(xy):
        imgs = project(fvol, torch.from_numpy(rot), torch.from_numpy(tilt), torch.from_numpy(psi),
                       torch.from_numpy(-frac), size=box, scale=apix / vol_apix).numpy().astype(np.float32)
    corners = ixy - box // 2
    clean = np.zeros(shape, np.float32)
    mask = np.zeros(shape, bool)
    _paste(clean, imgs[:n], corners[:n], mask, mask_threshold)
    mask = ndi.binary_fill_holes(mask)
    aggregates = np.zeros(shape, np.float32)
    if len(agg_xy):
        yy, xx = np.mgrid[0:box, 0:box] - box // 2
        a = rng.uniform(0, 2 * np.pi, len(agg_xy))
        off = rng.uniform(-0.3, 0.3, len(agg_xy)) * diam_px
        cut = 0.5 * (1 + np.tanh((np.cos(a)[:, None, None] * xx + np.sin(a)[:, None, None] * yy
                                  - off[:, None, None]) / 2.0))
        parts = imgs[n:] * cut * rng.uniform(0.5, 1.0, (len(agg_xy), 1, 1))
        _paste(aggregates, parts.astype(np.float32), corners[n:])

    pad = min(256, int(2 * box))
    signal = -_ctf_filter(clean + aggregates, apix, ctf_kw, pad)
    if n:
        p_signal = float(np.var(-_ctf_filter(clean, apix, ctf_kw, pad)[mask]))
    else:
        p_signal = _reference_power(fvol, vol_apix, apix, box, ctf_kw, mask_threshold, rng)
    sigma = math.sqrt(p_signal / 10 ** (snr_db / 10)) if p_signal > 0 else 1.0
    background = (bg_unit * sigma).astype(np.float32)
    noise = rng.standard_normal(shape, dtype=np.float32) * np.float32(sigma)
    image = (signal + background + noise).astype(np.float32)

    particles = pd.DataFrame({
        "micrograph": name, "x": coords[:, 0], "y": coords[:, 1],
        "rot": rot[:n], "tilt": tilt[:n], "psi": psi[:n],
        "origin_x_A": origin_A[:, 0], "origin_y_A": origin_A[:, 1],
        "apix": apix, "image_apix": apix, "defocus_u": du, "defocus_v": dv, "defocus_angle": dang,
        "voltage": voltage, "cs": cs, "amp_contrast": amp_contrast, "optics_group": 1,
    })
    params = dict(defocus_u=du, defocus_v=dv, defocus_angle=dang, noise_sigma=sigma, signal_power=p_signal,
                  snr_db=snr_db, n_particles=n, n_aggregates=int(n_agg), box=box, diameter_A=diameter_A)
    return SimResult(image, clean, signal, background, mask.astype(np.uint8), junk.astype(np.uint8),
                     particles, params)


def _reference_power(fvol, vol_apix, apix, box, ctf_kw, thr, rng, k=8):
    """Signal power of ``k`` random views, for micrographs without particles."""
    sub = np.random.default_rng(rng.integers(2**63))
    rot, tilt, psi = random_euler(sub, k)
    imgs = project(fvol, torch.from_numpy(rot), torch.from_numpy(tilt), torch.from_numpy(psi),
                   size=box, scale=apix / vol_apix).numpy()
    canvas = np.zeros((box, box * k), np.float32)
    mask = np.zeros_like(canvas, bool)
    _paste(canvas, imgs.astype(np.float32), [(i * box, 0) for i in range(k)], mask, thr)
    return float(np.var(_ctf_filter(canvas, apix, ctf_kw, box)[mask]))


__all__ = ["DEFAULT_INTERFERENCE", "SimResult", "random_euler", "simulate_micrograph"]
