"""A second, independent micrograph simulator: pixer judged on data its own simulator did not make.

pixer's general model is trained on ``pixer.simulate``; this script shares no code with it, so
the sets it makes test what a user's (or a benchmark's) simulator would: other particles, other
noise, other units. What differs from ``pixer.simulate``:

* **specimens**: clouds of Gaussian pseudo-atoms (one per ~130 Å³, as residues; 300-20000)
  filling a random ellipsoid (axes 0.45-1 × the diameter), one shape per set, a random 3D
  orientation per particle; the projected potential is a 2D histogram of the rotated atoms
  blurred by 2 Å;
* **optics**: weak-phase image ``1 − c · F⁻¹[V · (√(1−A²) sin χ + A cos χ) · e^(−B k²/4)]`` with
  300 kV, Cs 2.7 mm, A 0.07, B 80 Å², defocus 0.8-3 µm per micrograph, no astigmatism;
* **noise and units**: electron counts, ``Poisson(dose · I)`` at a dose of 40 e⁻/px, then a
  counting detector's MTF (sinc, 0.64 at Nyquist), so the noise is coloured and the stored
  values are counts around 40, not zero-mean; ``c`` is set so that the particles' signal
  variance over their discs divided by the noise variance is the requested SNR (dB);
* **junk**: ice thickness drifting over the micrograph (a smooth random field, ±8 %),
  ice crystals / ethane contamination (1-4 dark soft discs of 1.5-5 diameters, some per
  micrograph), and a carbon edge (a darker half-plane) on every other micrograph.

Each set is written as ``OUT/<name>/micrographs/*.mrc`` (float32 counts, pixel size in the
header), ``OUT/<name>/truth.csv`` (micrograph, x, y in pixels) and a ``samplesheet.csv`` row for
``pixer benchmark``. Example (the table in docs/general_model.md, "An independent simulator")::

    python bench/foreign_sim.py --out /tmp/foreign
    pixer benchmark --samplesheet /tmp/foreign/samplesheet.csv --out /tmp/foreign/bench \\
        --peers relion,topaz,lattice --cluster none
"""

from __future__ import annotations

import argparse
import json
import zlib
from pathlib import Path

import mrcfile
import numpy as np
import pandas as pd
from scipy.ndimage import gaussian_filter

#: name: (diameter Å, Å/px, SNR dB, minimum spacing in diameters, fraction of the area covered)
SETS = {
    "f150_2.5A_10dB": (150.0, 2.5, -10.0, 1.0, 0.25),
    "f100_1.0A_15dB": (100.0, 1.0, -15.0, 1.0, 0.25),
    "f250_4.0A_15dB": (250.0, 4.0, -15.0, 1.0, 0.30),
    "f120_1.5A_20dB": (120.0, 1.5, -20.0, 1.0, 0.25),
    "f120_2.0A_15dB_crowded": (120.0, 2.0, -15.0, 0.85, 0.55),
    "f180_2.0A_empty": (180.0, 2.0, -15.0, 1.0, 0.0),
}
WAVELENGTH_A = 0.019687  # 300 kV
CS_A = 2.7e7
AMP = 0.07
B_FACTOR = 80.0
DOSE = 40.0


def specimen(rng: np.random.Generator, diameter_A: float) -> np.ndarray:
    """``(n, 3)`` pseudo-atom positions (Å, centred) filling a random ellipsoid of the diameter."""
    axes = 0.5 * diameter_A * np.sort(rng.uniform(0.45, 1.0, 3))[::-1]
    axes[0] = 0.5 * diameter_A  # the longest axis spans the diameter
    n = int(np.clip(4 / 3 * np.pi * np.prod(axes) / 130.0, 300, 20000))  # ~ one pseudo-atom per residue
    pts = rng.normal(size=(4 * n, 3))
    pts /= np.linalg.norm(pts, axis=1, keepdims=True)
    pts *= rng.uniform(0, 1, (4 * n, 1)) ** (1 / 3)
    lumps = rng.normal(size=(6, 3)) * 0.4  # a few denser domains, so the shape is not a plain ellipsoid
    pts[: 2 * n] = 0.6 * pts[: 2 * n] + lumps[rng.integers(0, 6, 2 * n)]
    pts = pts[np.linalg.norm(pts, axis=1) <= 1.0][:n]
    return pts * axes


def rotation(rng: np.random.Generator) -> np.ndarray:
    """A uniformly random 3D rotation matrix."""
    q = rng.normal(size=4)
    w, x, y, z = q / np.linalg.norm(q)
    return np.array([[1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
                     [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
                     [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)]])


def place(rng: np.random.Generator, size: int, d_px: float, spacing: float, coverage: float) -> np.ndarray:
    """Dart throwing: centres at least ``spacing · d`` apart, about ``coverage`` of the area."""
    want = int(coverage * size * size / (np.pi * (d_px / 2) ** 2))
    pts: list[np.ndarray] = []
    margin = 0.6 * d_px
    for _ in range(60 * max(want, 1)):
        if len(pts) >= want:
            break
        p = rng.uniform(margin, size - 1 - margin, 2)
        if not pts or np.min(np.hypot(*(np.array(pts) - p).T)) >= spacing * d_px:
            pts.append(p)
    return np.array(pts).reshape(-1, 2)


def ctf(shape: tuple[int, int], apix: float, defocus_A: float) -> np.ndarray:
    ky = np.fft.fftfreq(shape[0], d=apix)[:, None]
    kx = np.fft.fftfreq(shape[1], d=apix)[None, :]
    k2 = kx * kx + ky * ky
    chi = np.pi * WAVELENGTH_A * defocus_A * k2 - 0.5 * np.pi * CS_A * WAVELENGTH_A**3 * k2 * k2
    return (np.sqrt(1 - AMP**2) * np.sin(chi) + AMP * np.cos(chi)) * np.exp(-B_FACTOR * k2 / 4)


def micrograph(rng: np.random.Generator, atoms: np.ndarray, size: int, apix: float, d_px: float,
               snr_db: float, spacing: float, coverage: float, carbon: bool) -> tuple[np.ndarray, np.ndarray]:
    """One micrograph (float32 counts) and its ``(n, 2)`` particle centres ``[x, y]`` in pixels."""
    centres = place(rng, size, d_px, spacing, coverage)
    xy = [(atoms @ rotation(rng).T)[:, :2] / apix + c for c in centres]
    pot = np.zeros((size, size))
    if xy:
        allxy = np.concatenate(xy)
        pot, _, _ = np.histogram2d(allxy[:, 1], allxy[:, 0], bins=size, range=[[-0.5, size - 0.5]] * 2)
        pot = gaussian_filter(pot, max(2.0 / apix, 0.5))
    image = np.real(np.fft.ifft2(np.fft.fft2(pot) * ctf(pot.shape, apix, rng.uniform(8000, 30000))))
    yy, xx = np.mgrid[:size, :size]
    disc = np.zeros((size, size), bool)
    for cx, cy in centres:
        r = int(d_px / 2) + 1
        y0, y1 = max(0, int(cy) - r), min(size, int(cy) + r + 1)
        x0, x1 = max(0, int(cx) - r), min(size, int(cx) + r + 1)
        disc[y0:y1, x0:x1] |= (xx[y0:y1, x0:x1] - cx) ** 2 + (yy[y0:y1, x0:x1] - cy) ** 2 <= (d_px / 2) ** 2
    signal_var = image[disc].var() if disc.any() else 1.0
    # noise variance of dose·I is dose (Poisson); in units of I it is 1 / dose
    scale = np.sqrt(10 ** (snr_db / 10) / DOSE / max(signal_var, 1e-30)) if disc.any() else 0.0
    intensity = 1.0 - scale * image
    ice = gaussian_filter(rng.normal(size=(size // 32 + 2, size // 32 + 2)), 1.5)
    ice = np.kron(ice / (np.abs(ice).max() + 1e-9), np.ones((32, 32)))[:size, :size]
    intensity *= 1.0 + 0.08 * gaussian_filter(ice, 16)
    for _ in range(rng.integers(1, 5)):  # contamination: dark soft discs
        c, r = rng.uniform(0, size, 2), rng.uniform(0.75, 2.5) * d_px
        edge = np.clip((np.hypot(xx - c[0], yy - c[1]) - r) / 2.0, -60, 60)
        intensity *= 1.0 - rng.uniform(0.2, 0.6) / (1 + np.exp(edge))
    if carbon:
        angle, off = rng.uniform(0, 2 * np.pi), rng.uniform(0.2, 0.8) * size
        side = (xx * np.cos(angle) + yy * np.sin(angle)) - off
        intensity *= 1.0 - 0.25 / (1 + np.exp(np.clip(-side / 3.0, -60, 60)))
    counts = rng.poisson(DOSE * np.clip(intensity, 0, None)).astype(np.float64)
    fy = np.fft.fftfreq(size)[:, None]
    fx = np.fft.fftfreq(size)[None, :]
    counts = np.real(np.fft.ifft2(np.fft.fft2(counts) * np.sinc(fx) * np.sinc(fy)))
    return counts.astype(np.float32), centres


def make_set(out: Path, name: str, params: tuple, n: int, size: int, seed: int) -> dict:
    diameter, apix, snr, spacing, coverage = params
    rng = np.random.default_rng([seed, zlib.crc32(name.encode())])
    atoms = specimen(rng, diameter)
    (out / name / "micrographs").mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(n):
        img, centres = micrograph(rng, atoms, size, apix, diameter / apix, snr, spacing, coverage, carbon=i % 2 == 1)
        fname = f"{name}_{i:03d}.mrc"
        with mrcfile.new(out / name / "micrographs" / fname, overwrite=True) as m:
            m.set_data(img)
            m.voxel_size = apix
        rows += [(fname, x, y) for x, y in centres]
    truth = pd.DataFrame(rows, columns=["micrograph", "x", "y"])
    truth.to_csv(out / name / "truth.csv", index=False, float_format="%.2f")
    return {"dataset": name, "micrographs": f"{name}/micrographs", "apix": apix, "diameter": diameter,
            "truth": f"{name}/truth.csv" if coverage > 0 else "", "n_particles": len(truth)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True)
    p.add_argument("--n", type=int, default=3, help="micrographs per set (default 3)")
    p.add_argument("--size", type=int, default=1024, help="micrograph side in pixels (default 1024)")
    p.add_argument("--seed", type=int, default=2026)
    p.add_argument("--sets", nargs="+", default=list(SETS), choices=list(SETS))
    a = p.parse_args()
    out = Path(a.out)
    rows = [make_set(out, name, SETS[name], a.n, a.size, a.seed) for name in a.sets]
    sheet = pd.DataFrame(rows)
    sheet[["dataset", "micrographs", "apix", "diameter", "truth"]].to_csv(out / "samplesheet.csv", index=False)
    (out / "sets.json").write_text(json.dumps(rows, indent=1))
    print(sheet.to_string(index=False))


if __name__ == "__main__":
    main()
