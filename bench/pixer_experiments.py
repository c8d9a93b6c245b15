"""Reproduce PIXER's segmentation experiments on simulated data (paper Figs. 5 and 9).

1. IoU of the segmentation net with 1 to 5 parallel atrous branches (Fig. 5).
2. IoU versus SNR (Fig. 9): one model trained on a mix of SNRs, validated on held-out
   micrographs at -5, -10, -15 and -20 dB.

Labels are made the PIXER way: ``pixer labels`` re-projects the simulator's map at every
particle's refined pose (the particles STAR), shifted by its origin and thresholded, so the
IoU is that of a reconstruction-derived mask, as in the paper. Training and validation
micrographs never overlap (different seeds).

Run (about 10-20 min on 2 CPU cores with the defaults)::

    python bench/pixer_experiments.py --out /tmp/pixer_experiments

Prints two markdown tables and writes ``results.json`` and ``iou_vs_branches.png`` /
``iou_vs_snr.png`` in ``--out``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from pixer.cli.main import main as pixer  # noqa: E402
from pixer.io.micrographs import list_micrographs  # noqa: E402
from pixer.train.prepare import label_samples  # noqa: E402
from pixer.models.store import load_model  # noqa: E402
from pixer.train.segmentation import TrainConfig, evaluate, make_loss, train_segmentation  # noqa: E402
from pixer.train.tiles import validation_tiles  # noqa: E402

DIAMETER = 125.0  # Å, the demo apoferritin


def make_set(out: Path, n: int, size: int, snr_db: float, seed: int) -> list:
    """Simulate ``n`` micrographs, label them from the reconstruction, return prepared samples."""
    if not (out / "labels" / "label_index.star").exists():
        assert pixer(["simulate", "--out", str(out), "--n", str(n), "--size", str(size), "--apix", "2.5",
                      "--snr-db", str(snr_db), "--seed", str(seed), "--no-progress"]) == 0  # fmt: skip
        assert pixer(["labels", "--particles", str(out / "particles.star"), "--map", str(out / "map.mrc"),
                      "--micrographs", str(out / "micrographs.star"), "--out", str(out / "labels"),
                      "--no-progress"]) == 0  # fmt: skip
    samples, _ = label_samples(list_micrographs(out / "micrographs.star"), out / "labels", DIAMETER, progress=False)
    return samples


def train(samples: list, out: Path, branches: int, steps: int, seed: int) -> float:
    """Train a model on ``samples`` into ``out``; returns the seconds taken."""
    config = TrainConfig(tile=128, batch_size=8, steps=steps, lr=2e-3, n_branches=branches, width=16,
                         seed=seed, val_tiles=32, eval_every=steps, checkpoint_every=0, particle_px=24)  # fmt: skip
    t0 = time.perf_counter()
    train_segmentation(samples, out, config, progress=False)
    return time.perf_counter() - t0


def iou_on(model_dir: Path, val: list) -> float:
    """IoU at probability 0.5 of a trained model over every tile of the held-out ``val`` micrographs."""
    model, _ = load_model(model_dir)
    x, y = validation_tiles(val, 128, 10_000)
    return evaluate(model, x, y, make_loss(), 16)[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("/tmp/pixer_experiments"))
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--n-train", type=int, default=6)
    parser.add_argument("--n-val", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    results: dict = {"args": {k: str(v) for k, v in vars(args).items()}}

    # 1. branches 1-5 at -10 dB
    samples = make_set(args.out / "train_m10", args.n_train, args.size, -10, seed=101)
    val = make_set(args.out / "val_m10", args.n_val, args.size, -10, seed=201)
    results["branches"] = {}
    for k in range(1, 6):
        seconds = train(samples, args.out / f"model_b{k}", k, args.steps, seed=0)
        r = {"val_iou": iou_on(args.out / f"model_b{k}", val), "seconds": seconds}
        results["branches"][k] = r
        print(f"branches {k}: IoU {r['val_iou']:.3f} ({r['seconds']:.0f} s)", flush=True)

    # 2. IoU vs SNR: train on a mix, validate per SNR
    snrs = (-5, -10, -15, -20)
    mix = []
    for i, snr in enumerate(snrs):
        mix += make_set(args.out / f"train_{snr}", max(2, args.n_train // 2), args.size, snr, seed=301 + i)
    results["snr"] = {}
    model_dir = args.out / "model_snr_mix"
    train(mix, model_dir, 4, args.steps, seed=0)
    for i, snr in enumerate(snrs):
        val = make_set(args.out / f"val_{snr}", args.n_val, args.size, snr, seed=401 + i)
        results["snr"][snr] = {"val_iou": iou_on(model_dir, val)}
        print(f"SNR {snr} dB: IoU {results['snr'][snr]['val_iou']:.3f}", flush=True)

    (args.out / "results.json").write_text(json.dumps(results, indent=2))
    print("\n| atrous branches | validation IoU |\n|---|---|")
    for k, r in results["branches"].items():
        print(f"| {k} | {r['val_iou']:.3f} |")
    print("\n| SNR (dB) | validation IoU |\n|---|---|")
    for snr, r in results["snr"].items():
        print(f"| {snr} | {r['val_iou']:.3f} |")
    for name, data, xlabel in (("iou_vs_branches", results["branches"], "parallel atrous branches"),
                               ("iou_vs_snr", results["snr"], "SNR (dB)")):  # fmt: skip
        fig, ax = plt.subplots(figsize=(4, 3))
        ax.plot(list(data), [r["val_iou"] for r in data.values()], "o-")
        ax.set_xlabel(xlabel)
        ax.set_ylabel("validation IoU")
        ax.set_ylim(0, 1)
        fig.tight_layout()
        fig.savefig(args.out / f"{name}.png", dpi=100)
        plt.close(fig)


if __name__ == "__main__":
    main()
