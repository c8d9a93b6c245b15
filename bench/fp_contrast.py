"""Do a picker's "false positives" look like particles? Blob contrast of matched and unmatched picks.

For each micrograph the image is standardised and the contrast of a dark disc is measured at every
point: mean of an annulus (``r``..``2.2 r``) minus the mean of the disc of radius ``r`` (``r`` = half
the diameter), so a particle darker than its surroundings scores high. Values are z-scores against
the same statistic at random points of that micrograph (median and robust σ from the IQR).
Picks at ``--threshold`` are matched one-to-one to the truth within 0.5 × diameter (the evaluator's
rule, :func:`pixer.evaluate.matching.match_picks`); the script prints the contrast of true
positives, false positives, missed particles (false negatives) and random points.

When false positives have the contrast of true positives, the picker found dark blobs of the
particle's size that the annotation leaves out, not empty ice.

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
from scipy.ndimage import uniform_filter

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


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--picks", required=True, help="picks CSV (micrograph, x, y, score; micrograph = MRC path)")
    p.add_argument("--truth", required=True, help="truth CSV (micrograph, x, y)")
    p.add_argument("--diameter", type=float, required=True, help="particle diameter, px")
    p.add_argument("--threshold", type=float, default=None, help="score cut (default: every pick)")
    p.add_argument("--plot", default=None, metavar="PNG",
                   help="also draw the first micrograph: true positives green, false positives red, missed yellow")
    p.add_argument("--random", type=int, default=3000, help="random points per micrograph")
    args = p.parse_args(argv)

    picks = pd.read_csv(args.picks, dtype={"micrograph": str})
    if args.threshold is not None:
        picks = picks[picks["score"] >= args.threshold]
    truth = pd.read_csv(args.truth, dtype={"micrograph": str})
    truth_by_key = {mic_key(m): g for m, g in truth.groupby("micrograph")}
    rng = np.random.default_rng(0)
    groups: dict[str, list[np.ndarray]] = {"true positives": [], "false positives": [], "missed (FN)": [],
                                           "random points": []}
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
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
