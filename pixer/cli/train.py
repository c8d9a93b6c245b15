"""Train the segmentation network on micrographs and particle coordinates.

Micrographs are binned so that a particle spans --particle-px pixels
(pixel size = diameter / particle-px, never finer than the micrograph's own),
normalised (clip at median ± k·σ), and labelled with discs at the particle
centres (true centres: coordinates minus refined origins where the STAR has
them). The network (PIXER-like trunk, output stride 8, parallel atrous
branches with summed logits) is trained on random tiles and validated by IoU
on held-out micrographs. The model folder holds model.pt (weights only),
config.json (architecture, pixel size, particle size, seed), train_log.csv and
train_curve.png.

With --labels DIR (a folder written by `pixer labels`) the labels are read
instead of drawn: each micrograph is matched to its label by name, and the
label is binned to the training grid exactly as the image is (Fourier crop,
then threshold 0.5). --diameter then defaults to the one in DIR/labels.json.

Scale and restarts: the same command runs on one CPU or GPU, or data-parallel
on several (one process per GPU; --batch-size is the combined batch), launched by
  torchrun --standalone --nproc_per_node=4 -m pixer.cli.main train ... --device cuda
  srun -n 8 --gpus-per-task=1 python -m pixer.cli.main train ... --device cuda
(NCCL on GPUs, gloo on CPUs; only rank 0 writes). A checkpoint is written every
--checkpoint-every steps; rerun with --resume to continue exactly where it
stopped. --init-trunk starts the trunk from `pixer train-classifier` (same --width).

Fine-tuning: --init general starts every weight from the general model shipped
with pixer (--init MODEL_DIR from any pixer model); architecture and particle
size then come from that model, and the learning rate defaults to 5e-4.

example:
  pixer train --micrographs sim/micrographs.star --coords sim/particles.star \\
      --diameter 120 --out model --steps 300
  pixer train --micrographs sim/micrographs --labels sim_labels --out model --steps 300
  pixer train --micrographs mics --coords picks.star --diameter 120 --out tuned --init general --steps 200
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from pixer.cli._common import positive_float, positive_int, write_run_record
from pixer.errors import PixerError
from pixer.io.coords import read_picks
from pixer.io.micrographs import list_micrographs
from pixer.labels.folder import read_label_index
from pixer.models.general import resolve_model
from pixer.models.store import load_model
from pixer.train.prepare import DEFAULT_PARTICLE_PX, disc_samples, label_samples
from pixer.train.segmentation import TrainConfig, train_segmentation


def add_args(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``pixer train``."""
    parser.add_argument("--micrographs", required=True, nargs="+",
                        help="micrographs: folder, glob, file(s) or a RELION micrographs STAR")
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument("--coords", nargs="+",
                        help="particle coordinates: particles STAR, coordinate STARs, Topaz txt, .box, CSV")
    target.add_argument("--labels", help="label folder written by `pixer labels` (instead of --coords)")
    parser.add_argument("--diameter", type=positive_float, default=None,
                        help="particle diameter in Å (required with --coords; default from --labels)")
    parser.add_argument("--out", required=True, help="model folder to write")
    parser.add_argument("--apix", type=positive_float, default=None,
                        help="micrograph pixel size in Å/px (default: from the MRC header)")
    parser.add_argument("--particle-px", type=positive_float, default=None,
                        help=f"particle diameter in pixels after binning (default {DEFAULT_PARTICLE_PX:g}, "
                             "or that of the --init model)")
    parser.add_argument("--label-fraction", type=positive_float, default=0.6,
                        help="label disc radius as a fraction of the particle radius (default 0.6)")
    parser.add_argument("--steps", type=positive_int, default=400, help="optimiser steps (default 400)")
    parser.add_argument("--batch-size", type=positive_int, default=8, help="tiles per step (default 8)")
    parser.add_argument("--tile", type=positive_int, default=128, help="training tile size in px (default 128)")
    parser.add_argument("--lr", type=positive_float, default=None,
                        help="peak learning rate (default 2e-3; 5e-4 with --init)")
    parser.add_argument("--branches", type=int, choices=range(1, 6), default=None,
                        help="parallel atrous branches, 1-5 (default 4, or that of the --init model)")
    parser.add_argument("--width", type=positive_int, default=None,
                        help="trunk width (default 32, or that of the --init model)")
    parser.add_argument("--pos-weight", type=positive_float, default=1.0,
                        help="loss weight of particle pixels (default 1)")
    parser.add_argument("--device", default="cpu", help="torch device (default cpu)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--resume", action="store_true",
                        help="continue from OUT/checkpoint.pt with the same arguments (fresh start if none)")
    parser.add_argument("--checkpoint-every", type=int, default=100,
                        help="steps between checkpoints in OUT/checkpoint.pt (0 = none; default 100)")
    parser.add_argument("--init-trunk", metavar="CLASSIFIER_DIR", default=None,
                        help="start the trunk from a `pixer train-classifier` folder (same --width)")
    parser.add_argument("--init", metavar="general|MODEL_DIR", default=None,
                        help="fine-tune: start every weight from the shipped general model ('general') or a "
                             "model folder written by pixer train")
    parser.add_argument("--amp", action=argparse.BooleanOptionalAction, default=None,
                        help="bf16 autocast on CUDA (default: on with CUDA; never on CPU)")
    parser.add_argument("--workers", type=int, default=0, help="data-loader worker processes per rank (default 0)")


def _labels_diameter(folder: str) -> float:
    """The particle diameter recorded by ``pixer labels`` in ``folder/labels.json``."""
    _, info = read_label_index(folder)
    value = info.get("diameter_A")
    if not (Path(folder) / "labels.json").is_file():
        raise PixerError(f"{Path(folder) / 'labels.json'}: not found (is this a pixer labels folder?): "
                         "pass --diameter")
    if not isinstance(value, (int, float)) or not value > 0:
        raise PixerError(f"{folder}: labels.json records no particle diameter: pass --diameter")
    return float(value)


def _apply_init(args: argparse.Namespace) -> None:
    """Resolve ``--init`` and fill architecture, particle size and learning rate from it (or the defaults)."""
    defaults = dict(width=32, branches=4, particle_px=DEFAULT_PARTICLE_PX, lr=2e-3)
    if args.init is not None:
        if args.init_trunk:
            raise PixerError("--init and --init-trunk both initialise the network: give one")
        folder = resolve_model(args.init)
        _, config = load_model(folder, device="cpu")
        arch = config["arch"]
        given = dict(width=arch["width"], branches=arch["n_branches"], particle_px=config.get("particle_px"))
        for key, value in given.items():
            mine = getattr(args, key)
            if key != "particle_px" and mine is not None and mine != value:
                raise PixerError(f"{folder}: the --init model has --{key} {value}, not {mine}")
            if value is not None:
                defaults[key] = value
        defaults["lr"] = 5e-4
        args.init = str(folder)
    for key, value in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, value)


def main(args: argparse.Namespace) -> int:
    """Run ``pixer train``."""
    _apply_init(args)
    micrographs = list_micrographs(args.micrographs)
    if args.labels:
        if args.diameter is None:
            args.diameter = _labels_diameter(args.labels)
        samples, apix_used = label_samples(micrographs, args.labels, args.diameter, particle_px=args.particle_px,
                                           apix=args.apix, progress=not args.no_progress)
        n_particles = None  # the label folder's labels.star has the particle counts
    else:
        if args.diameter is None:
            raise PixerError("--diameter is required with --coords")
        picks = read_picks(args.coords)
        if picks.empty:
            raise PixerError(f"{' '.join(args.coords)}: no particle coordinates")
        samples, apix_used = disc_samples(
            micrographs, picks, args.diameter, particle_px=args.particle_px, apix=args.apix,
            label_fraction=args.label_fraction, progress=not args.no_progress,
        )
        n_particles = len(picks)
    config = TrainConfig(
        tile=args.tile, batch_size=args.batch_size, steps=args.steps, lr=args.lr,
        n_branches=args.branches, width=args.width, seed=args.seed, pos_weight=args.pos_weight,
        device=args.device, apix=apix_used, diameter_A=(args.diameter, args.diameter),
        particle_px=args.particle_px, eval_every=max(1, min(100, args.steps // 4)),
        stride=args.tile // 2, checkpoint_every=args.checkpoint_every, amp=args.amp, init_trunk=args.init_trunk,
        init_from=args.init,
        num_workers=args.workers,
    )
    metrics = train_segmentation(samples, args.out, config, progress=not args.no_progress, resume=args.resume)
    if metrics["rank"] != 0:  # data-parallel: rank 0 writes
        return 0
    write_run_record(args.out, "train", args, n_micrographs=len(micrographs), n_samples=len(samples), n_particles=n_particles,
                     apix_used=apix_used, metrics=metrics)
    print(json.dumps({k: metrics[k] for k in ("val_iou", "best_val_iou", "steps", "seconds", "tiles_per_s")},
                     indent=2))
    return 0
