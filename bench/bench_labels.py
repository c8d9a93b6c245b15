"""Label synthesis throughput (particles/s): re-project a map per particle and paste the masks.

Random particles (uniform orientations, origins of a few Å) on ``--n-mic``
micrographs of ``--size``² px at ``--apix`` Å/px, labels on a grid of
``--out-apix`` Å/px (the training grid; default the micrograph's own), map: the
apoferritin demo at ``--map-apix`` Å. Times :func:`pixer.labels.synthesize_labels`
only (no file I/O), after one warm-up micrograph.

Run: ``python bench/bench_labels.py [--n-mic 20] [--particles 200] [--device cuda]``.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd
import torch

from pixer.labels import synthesize_labels
from pixer.simulate.density import demo_density, estimate_diameter
from pixer.simulate.micrograph import random_euler


def particles(n_mic: int, n: int, size: int, apix: float, seed: int = 0) -> pd.DataFrame:
    """``n_mic × n`` random particles (table of docs/CONTRACTS.md)."""
    rng = np.random.default_rng(seed)
    m = n_mic * n
    rot, tilt, psi = random_euler(rng, m)
    return pd.DataFrame({
        "micrograph": np.repeat([f"mic_{i:04d}.mrc" for i in range(n_mic)], n),
        "x": rng.uniform(0, size, m).round(), "y": rng.uniform(0, size, m).round(),
        "rot": rot, "tilt": tilt, "psi": psi,
        "origin_x_A": rng.normal(0, 3, m), "origin_y_A": rng.normal(0, 3, m), "apix": apix,
    })


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n-mic", type=int, default=20, help="micrographs (default 20)")
    ap.add_argument("--particles", type=int, default=200, help="particles per micrograph (default 200)")
    ap.add_argument("--size", type=int, default=4096, help="micrograph edge, px (default 4096)")
    ap.add_argument("--apix", type=float, default=1.0, help="micrograph pixel size, Å/px (default 1.0)")
    ap.add_argument("--out-apix", type=float, default=None, help="label pixel size, Å/px (default: --apix)")
    ap.add_argument("--map-apix", type=float, default=2.0, help="map voxel size, Å (default 2.0)")
    ap.add_argument("--batch", type=int, default=1024, help="particles per projection call (default 1024)")
    ap.add_argument("--instance", action="store_true", help="also build instance images")
    ap.add_argument("--device", default="cpu", help="torch device (default cpu)")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    vol = demo_density("apoferritin", args.map_apix)
    diameter = estimate_diameter(vol, args.map_apix)
    shapes = {f"mic_{i:04d}.mrc": (args.size, args.size) for i in range(args.n_mic)}
    table = particles(args.n_mic, args.particles, args.size, args.apix)
    kw = dict(out_apix=args.out_apix, instance=args.instance, device=args.device, batch=args.batch,
              diameter_A=diameter)

    def run(n_mic: int) -> tuple[float, int]:
        sub = dict(list(shapes.items())[:n_mic])
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()
        t = time.perf_counter()
        pasted = sum(int((r.records["status"] == "pasted").sum())
                     for r in synthesize_labels(table, vol, args.map_apix, sub, **kw))
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()
        return time.perf_counter() - t, pasted

    run(1)  # warm-up (map transform, kernels)
    seconds, pasted = run(args.n_mic)
    label_px = args.out_apix or args.apix
    print(f"device {args.device}, torch threads {torch.get_num_threads()}, map {vol.shape[0]}³ at "
          f"{args.map_apix} Å, diameter {diameter:.0f} Å")
    print(f"{args.n_mic} micrographs {args.size}² px at {args.apix} Å/px, labels at {label_px} Å/px, "
          f"{pasted} particles pasted: {seconds:.2f} s, {pasted / seconds:.0f} particles/s, "
          f"{seconds / args.n_mic * 1e3:.0f} ms per micrograph")
    print(f"extrapolated 1000 micrographs × {args.particles} particles: {seconds / args.n_mic * 1000 / 60:.1f} min")


if __name__ == "__main__":
    main()
