"""Training throughput of the default segmentation net (tiles/s on this machine).

Example::

    python bench/bench_train.py --steps 5 --tile 256 --batch-size 8 --threads 2
"""

from __future__ import annotations

import argparse
import time

import torch

from pixer.models import n_parameters, receptive_field
from pixer.train import TrainConfig, build_training, make_loss, train_step


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=5, help="timed steps (after 2 warm-up steps)")
    p.add_argument("--tile", type=int, default=256)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch default)")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--amp", action=argparse.BooleanOptionalAction, default=None,
                   help="bf16 autocast (default: on with CUDA)")
    a = p.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    cfg = TrainConfig(tile=a.tile, batch_size=a.batch_size, steps=a.steps + 2, device=a.device)
    model, opt, sched = build_training(cfg)
    loss_fn = make_loss()
    amp = a.device.startswith("cuda") if a.amp is None else a.amp
    x = torch.randn(a.batch_size, 1, a.tile, a.tile, device=a.device)
    y = (torch.rand_like(x) < 0.1).float()
    for _ in range(2):
        train_step(model, opt, sched, x, y, loss_fn, amp)
    if a.device.startswith("cuda"):
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(a.steps):
        train_step(model, opt, sched, x, y, loss_fn, amp)
    if a.device.startswith("cuda"):
        torch.cuda.synchronize()
    dt = time.perf_counter() - t0
    print(
        f"device={a.device} amp={amp} threads={torch.get_num_threads()} tile={a.tile} batch={a.batch_size} "
        f"params={n_parameters(model)} rf={receptive_field(model)}px: "
        f"{a.steps * a.batch_size / dt:.2f} tiles/s ({dt / a.steps:.3f} s/step)"
    )


if __name__ == "__main__":
    main()
