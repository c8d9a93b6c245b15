"""Validation IoU of a short training at one SNR (issue target: simulated apoferritin at -15 dB).

Simulates training and held-out micrographs (apoferritin-like demo, interference on), makes
PIXER labels from the reconstruction (`pixer labels`), trains the default-width network briefly
and prints the IoU at probability 0.5 on every tile of the held-out micrographs::

    python bench/iou_at_snr.py --snr-db -15 --steps 500 --n-train 8 --out /tmp/iou15
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from pixer.train.segmentation import TrainConfig, train_segmentation
from pixer_experiments import iou_on, make_set


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("/tmp/pixer_iou_at_snr"))
    parser.add_argument("--snr-db", type=float, default=-15.0)
    parser.add_argument("--steps", type=int, default=500)
    parser.add_argument("--width", type=int, default=32)
    parser.add_argument("--n-train", type=int, default=8)
    parser.add_argument("--n-val", type=int, default=2)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    train = make_set(args.out / "train", args.n_train, 512, args.snr_db, seed=501)
    val = make_set(args.out / "val", args.n_val, 512, args.snr_db, seed=601)
    config = TrainConfig(tile=128, batch_size=8, steps=args.steps, lr=2e-3, n_branches=4, width=args.width,
                         seed=0, val_tiles=32, eval_every=args.steps, checkpoint_every=0, particle_px=24,
                         device=args.device)  # fmt: skip
    t0 = time.perf_counter()
    train_segmentation(train, args.out / "model", config, progress=False)
    seconds = time.perf_counter() - t0
    print(f"SNR {args.snr_db:g} dB, width {args.width}, {args.steps} steps on {args.n_train} micrographs "
          f"({seconds:.0f} s on {args.device}): validation IoU {iou_on(args.out / 'model', val):.3f}")


if __name__ == "__main__":
    main()
