"""Do a picker's "false positives" look like particles? Blob contrast of matched and unmatched picks.

For each micrograph the image is standardised and the contrast of a dark disc is measured at every
point: mean of an annulus (``r``..``2.2 r``) minus the mean of the disc of radius ``r`` (``r`` = half
the diameter), so a particle darker than its surroundings scores high. Values are z-scores against
the same statistic at random points of that micrograph (median and robust σ from the IQR).
Picks at ``--threshold`` are matched one-to-one to the truth within 0.5 × diameter (the evaluator's
rule, :func:`pixer.evaluate.matching.match_picks`); the script prints the contrast of true
positives, false positives, missed particles (false negatives) and random points.

When false positives have the contrast of true positives, the picker found dark blobs of the
particle's size that the annotation leaves out, not empty ice. Two more checks say so:

* ``blob size``: the full width at half depth of each point's radial profile; a different particle
  (a subunit, an aggregate) would show a different size.
* ``--masks DIR`` (one PNG or MRC label image per micrograph, same stem, any resolution): how many
  false positives sit on a labelled pixel (a truth-extraction fault) rather than off every mask.

It also prints the F1 a picker would reach if it found every truth particle and every false
positive with a particle's contrast (z at least the 10th percentile of the true positives):
the ceiling a picker of all particle-like blobs meets against this truth.

Usage (``bench/eval_real.py`` layout)::

    python bench/fp_contrast.py --picks /tmp/pixer_real/test/10028/pixer_general_edge0.5_f0.9/picks.csv \
        --truth /tmp/pixer_real/mrc/10028/truth_test.csv --diameter 55 --threshold 0.63 \
        --plot /tmp/fp_10028.png
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.ndimage import gaussian_filter, uniform_filter

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from pixer.evaluate.matching import match_picks, mic_key
from pixer.evaluate.plots import plot_picks
from pixer.io.micrographs import read_micrograph


def disc_contrast(image: np.ndarray, diameter_px: float) -> np.ndarray:
    """Annulus-minus-disc contrast map, ``(h, w)``, of the standardised ``(h, w)`` image (box filters)."""
    img = (image - image.mean()) / (image.std() + 1e-12)
    k1 = max(round(diameter_px / 2), 1)
    k2 = max(round(2.2 * diameter_px / 2), k1 + 2)
    inner = uniform_filter(img, k1)
    outer = uniform_filter(img, k2)
    return (outer * k2**2 - inner * k1**2) / (k2**2 - k1**2) - inner


def contrast_at(stat: np.ndarray, xy: np.ndarray, centre: float, sigma: float) -> np.ndarray:
    """z-scores ``(stat − centre) / sigma`` of the ``(h, w)`` contrast map at the ``(n, 2)`` ``[x, y]`` points."""
    h, w = stat.shape
    r = np.clip(np.round(xy[:, 1]).astype(int), 0, h - 1)
    c = np.clip(np.round(xy[:, 0]).astype(int), 0, w - 1)
    return (stat[r, c] - centre) / sigma


def blob_size(image: np.ndarray, xy: np.ndarray, diameter_px: float) -> np.ndarray:
    """Apparent diameter (px) of the dark blob at each of the ``(n, 2)`` ``[x, y]`` points, ``(n,)``.

    Full width at half depth of the radial profile (median of each 1-px ring of the image smoothed
    with σ = 0.05 d): twice the radius, searched from the outside in, below which the profile stays
    under halfway from the centre (r < 0.15 d) to the surround (0.75-1.0 d).
    """
    R = int(np.ceil(1.0 * diameter_px))
    yy, xx = np.mgrid[-R:R + 1, -R:R + 1]
    ring = np.rint(np.hypot(yy, xx)).astype(int)
    padded = np.pad(gaussian_filter(image, 0.05 * diameter_px), R, mode="reflect")
    out = np.zeros(len(xy))
    for k, (x, y) in enumerate(np.rint(xy).astype(int)):
        patch = padded[y:y + 2 * R + 1, x:x + 2 * R + 1]
        prof = np.array([np.median(patch[ring == r]) for r in range(R + 1)])
        r = np.arange(R + 1)
        centre = prof[r < 0.15 * diameter_px].mean()
        surround = prof[(r >= 0.75 * diameter_px) & (r <= diameter_px)].mean()
        below = np.nonzero(prof[: int(0.75 * diameter_px)] < (centre + surround) / 2)[0]
        out[k] = 2.0 * (below[-1] + 0.5 if len(below) else 0.0)
    return out


def read_label(folder: Path, mic: str, shape: tuple[int, int]) -> np.ndarray | None:
    """The label image for micrograph ``mic`` in ``folder`` (PNG or MRC, same stem), resized to ``shape``; bool."""
    stem = Path(mic).stem
    for ext in (".png", ".mrc"):
        f = folder / f"{stem}{ext}"
        if f.exists():
            if ext == ".png":
                from PIL import Image
                lab = np.asarray(Image.open(f))
                lab = lab[..., 0] if lab.ndim == 3 else lab
            else:
                lab = read_micrograph(f, blank_ok=True).data
            lab = lab > 0
            ky, kx = shape[0] / lab.shape[0], shape[1] / lab.shape[1]
            rows = np.minimum((np.arange(shape[0]) / ky).astype(int), lab.shape[0] - 1)
            cols = np.minimum((np.arange(shape[1]) / kx).astype(int), lab.shape[1] - 1)
            return lab[np.ix_(rows, cols)]
    return None


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--picks", required=True, help="picks CSV (micrograph, x, y, score; micrograph = MRC path)")
    p.add_argument("--truth", required=True, help="truth CSV (micrograph, x, y)")
    p.add_argument("--diameter", type=float, required=True, help="particle diameter, px")
    p.add_argument("--threshold", type=float, default=None, help="score cut (default: every pick)")
    p.add_argument("--plot", default=None, metavar="PNG",
                   help="also draw the first micrograph: true positives green, false positives red, missed yellow")
    p.add_argument("--random", type=int, default=3000, help="random points per micrograph")
    p.add_argument("--masks", default=None, metavar="DIR",
                   help="label images (PNG or MRC, one per micrograph, same stem): count false positives on a mask")
    args = p.parse_args(argv)

    picks = pd.read_csv(args.picks, dtype={"micrograph": str})
    if args.threshold is not None:
        picks = picks[picks["score"] >= args.threshold]
    truth = pd.read_csv(args.truth, dtype={"micrograph": str})
    truth_by_key = {mic_key(m): g for m, g in truth.groupby("micrograph")}
    rng = np.random.default_rng(0)
    groups: dict[str, list[np.ndarray]] = {"true positives": [], "false positives": [], "missed (FN)": [],
                                           "random points": []}
    sizes: dict[str, list[np.ndarray]] = {"true positives": [], "false positives": [], "missed (FN)": []}
    fp_on_mask = fp_total = 0
    d = args.diameter
    for mic, g in picks.groupby("micrograph"):
        image = read_micrograph(mic).data.astype(np.float64)
        stat = disc_contrast(image, d)
        h, w = stat.shape
        m = int(d)
        bg = stat[rng.integers(m, h - m, args.random), rng.integers(m, w - m, args.random)]
        centre, sigma = np.median(bg), np.subtract(*np.percentile(bg, [75, 25])) / 1.349

        pp = g[["x", "y"]].to_numpy(float)
        tg = truth_by_key.get(mic_key(mic))
        tt = tg[["x", "y"]].to_numpy(float) if tg is not None else np.zeros((0, 2))
        pi, ti = match_picks(pp, tt, 0.5 * d)
        hit_p = np.zeros(len(pp), bool)
        hit_p[pi] = True
        hit_t = np.zeros(len(tt), bool)
        hit_t[ti] = True
        groups["true positives"].append(contrast_at(stat, pp[hit_p], centre, sigma))
        groups["false positives"].append(contrast_at(stat, pp[~hit_p], centre, sigma))
        groups["missed (FN)"].append(contrast_at(stat, tt[~hit_t], centre, sigma))
        groups["random points"].append((bg - centre) / sigma)
        sizes["true positives"].append(blob_size(image, pp[hit_p], d))
        sizes["false positives"].append(blob_size(image, pp[~hit_p], d))
        sizes["missed (FN)"].append(blob_size(image, tt[~hit_t], d))
        if args.masks:
            lab = read_label(Path(args.masks), mic, image.shape)
            if lab is None:
                raise SystemExit(f"{args.masks}: no label image for {Path(mic).name} (.png or .mrc)")
            fxy = np.round(pp[~hit_p]).astype(int)
            fp_on_mask += int(lab[np.clip(fxy[:, 1], 0, h - 1), np.clip(fxy[:, 0], 0, w - 1)].sum())
            fp_total += len(fxy)
        if args.plot:
            plot_picks(image, pp, tt, diameter_px=d, path=args.plot,
                       title=f"{Path(mic).name}: true positives green, false positives red, missed yellow")
            args.plot = None
    print("| points | n | contrast z: median | q25 | q75 |\n|---|---|---|---|---|")
    for name, parts in groups.items():
        v = np.concatenate(parts) if parts else np.zeros(0)
        if len(v):
            q25, med, q75 = np.percentile(v, [25, 50, 75])
            print(f"| {name} | {len(v)} | {med:.2f} | {q25:.2f} | {q75:.2f} |")
        else:
            print(f"| {name} | 0 | – | – | – |")
    print("\n| points | blob size / diameter: median | q25 | q75 |\n|---|---|---|---|")
    for name, parts in sizes.items():
        v = np.concatenate(parts) / d if parts else np.zeros(0)
        if len(v):
            q25, med, q75 = np.percentile(v, [25, 50, 75])
            print(f"| {name} | {med:.2f} | {q25:.2f} | {q75:.2f} |")
    if args.masks:
        print(f"\nfalse positives on a labelled pixel: {fp_on_mask} of {fp_total}")
    tp_z = np.concatenate(groups["true positives"])
    fp_z = np.concatenate(groups["false positives"])
    n_truth = sum(len(truth_by_key.get(mic_key(m), [])) for m in picks["micrograph"].unique())
    if len(tp_z) and n_truth:
        like = int((fp_z >= np.percentile(tp_z, 10)).sum())
        print(f"\nfalse positives with a particle's contrast (z ≥ the true positives' 10th percentile): "
              f"{like} of {len(fp_z)}; a picker of every truth particle and these reaches "
              f"F1 {2 * n_truth / (2 * n_truth + like):.3f} against this truth")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
