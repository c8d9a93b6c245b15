"""Time the grid local-maximum search on synthetic probability maps.

Prints milliseconds per map for 1024x1024 and 4096x4096 maps at a particle
diameter of 40 px (blobs at ~25 % of the close-packed density plus noise).

Example::

    python bench/bench_localmax.py --device cpu --repeats 3
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from scipy.ndimage import gaussian_filter

from pixer.pick.localmax import grid_local_maxima


def synthetic_map(size: int, diameter: float, seed: int = 0) -> np.ndarray:
    """``(size, size)`` float32 map in [0, 1]: particle-sized blobs plus uniform noise."""
    rng = np.random.default_rng(seed)
    n = int(0.25 * size * size / diameter**2)
    img = np.zeros((size, size), np.float32)
    ys, xs = rng.integers(0, size, (2, n))
    img[ys, xs] = 1.0
    img = gaussian_filter(img, diameter / 4)
    img /= img.max()
    return np.clip(img + 0.1 * rng.random(img.shape, dtype=np.float32), 0, 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--diameter", type=float, default=40.0, help="particle diameter (px)")
    parser.add_argument("--sizes", type=int, nargs="+", default=[1024, 4096])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    print(f"device={args.device} torch_threads={torch.get_num_threads()} diameter={args.diameter} px")
    for size in args.sizes:
        prob = torch.from_numpy(synthetic_map(size, args.diameter)).to(args.device)
        grid_local_maxima(prob, args.diameter, min_score=0.2)  # warm-up
        times = []
        for _ in range(args.repeats):
            if args.device.startswith("cuda"):
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            xy, _ = grid_local_maxima(prob, args.diameter, min_score=0.2)
            if args.device.startswith("cuda"):
                torch.cuda.synchronize()
            times.append(time.perf_counter() - t0)
        print(f"{size}x{size}: {1e3 * np.median(times):8.1f} ms/map (median of {args.repeats}), {len(xy)} picks")


if __name__ == "__main__":
    main()
