"""Seconds per simulated 1024 x 1024 micrograph (apoferritin demo, 2 Å/px, ~100 particles).

Run: ``python bench/bench_simulate.py [--reps 5] [--threads N]``.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from pixer.physics.project import fourier_volume
from pixer.simulate.density import demo_density, estimate_diameter
from pixer.simulate.micrograph import simulate_micrograph


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--size", type=int, default=1024)
    ap.add_argument("--apix", type=float, default=2.0)
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    vol = demo_density("apoferritin", args.apix)
    diameter = estimate_diameter(vol, args.apix)
    fvol = fourier_volume(torch.from_numpy(vol))
    t_prep = time.perf_counter() - t0
    times, counts = [], []
    for i in range(args.reps + 1):
        t = time.perf_counter()
        res = simulate_micrograph(fvol, args.apix, (args.size, args.size), args.apix, 100, -10.0,
                                  np.random.default_rng([0, i]), diameter_A=diameter)
        if i:  # first call warms up
            times.append(time.perf_counter() - t)
            counts.append(res.params["n_particles"])
    print(f"map preparation: {t_prep:.2f} s (once per dataset)")
    print(f"{args.size}^2 px, {np.mean(counts):.0f} particles, {args.apix} Å/px: "
          f"{np.median(times):.3f} s per micrograph (median of {args.reps}, min {min(times):.3f})")


if __name__ == "__main__":
    main()
