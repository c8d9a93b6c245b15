"""Train the crop classifier (particle / interference / noise) whose trunk initialises `pixer train`.

Micrographs are binned and normalised as for `pixer train` (a particle spans
--particle-px pixels). Crops of --box-factor × particle size are cut at the
particle centres (particle), on interference masks (interference: the
simulator's truth/<stem>_junk.mrc or masks you drew, one MRC per micrograph
named <stem>_junk.mrc or <stem>.mrc in --junk-masks; and on --negatives, picks
known not to be particles, such as those 2D classification rejected) and far from
all of them (noise).
Validation on held-out micrographs: accuracy and confusion matrix in
classifier.json, curve in classifier_log.csv / classifier_curve.png.
Then `pixer train --init-trunk DIR --width W` starts from this trunk (same W).

example:
  pixer train-classifier --micrographs sim/micrographs --coords sim/particles.star \\
      --diameter 127 --junk-masks sim/truth --out classifier --steps 300
  pixer train --micrographs sim/micrographs --coords sim/particles.star --diameter 127 \\
      --init-trunk classifier --out model
  pixer train-classifier --micrographs mics --coords kept.star --negatives rejected.star \\
      --diameter 150 --out classifier
"""

from __future__ import annotations

import argparse
import json
import sys

from pixer.cli._common import positive_float, positive_int, write_run_record
from pixer.errors import PixerError
from pixer.io.match import match_micrograph_names
from pixer.io.coords import read_picks
from pixer.io.micrographs import list_micrographs
from pixer.train.classifier import (
    ClassifierTrainConfig,
    classifier_crops,
    train_classifier,
)
from pixer.train.prepare import DEFAULT_PARTICLE_PX


def add_args(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``pixer train-classifier``."""
    parser.add_argument("--micrographs", required=True, nargs="+",
                        help="micrographs: folder, glob, file(s) or a RELION micrographs STAR")
    parser.add_argument("--coords", required=True, nargs="+",
                        help="particle coordinates: particles STAR, coordinate STARs, Topaz txt, .box, CSV")
    parser.add_argument("--diameter", required=True, type=positive_float, help="particle diameter in Å")
    parser.add_argument("--junk-masks", default=None,
                        help="folder of interference masks (<stem>_junk.mrc or <stem>.mrc, 1 = interference)")
    parser.add_argument("--negatives", nargs="+", default=None, metavar="COORDS",
                        help="picks that are not particles (e.g. the ones 2D classification rejected), any "
                             "coordinate format: interference crops, what the classifier learns to remove")
    parser.add_argument("--out", required=True, help="classifier folder to write")
    parser.add_argument("--apix", type=positive_float, default=None,
                        help="micrograph pixel size in Å/px (default: from the MRC header)")
    parser.add_argument("--particle-px", type=positive_float, default=DEFAULT_PARTICLE_PX,
                        help=f"particle diameter in pixels after binning (default {DEFAULT_PARTICLE_PX:g})")
    parser.add_argument("--box-factor", type=positive_float, default=1.75,
                        help="crop side / particle diameter (default 1.75)")
    parser.add_argument("--steps", type=positive_int, default=300, help="optimiser steps (default 300)")
    parser.add_argument("--batch-size", type=positive_int, default=64, help="crops per step (default 64)")
    parser.add_argument("--lr", type=positive_float, default=2e-3, help="peak learning rate (default 2e-3)")
    parser.add_argument("--width", type=positive_int, default=32,
                        help="trunk width; `pixer train --init-trunk` needs the same (default 32)")
    parser.add_argument("--device", default="cpu", help="torch device (default cpu)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def main(args: argparse.Namespace) -> int:
    """Run ``pixer train-classifier``."""
    micrographs = list_micrographs(args.micrographs)
    picks = read_picks(args.coords)
    if picks.empty:
        raise PixerError(f"{' '.join(args.coords)}: no particle coordinates")
    config = ClassifierTrainConfig(
        particle_px=args.particle_px, box_factor=args.box_factor, width=args.width, steps=args.steps,
        batch_size=args.batch_size, lr=args.lr, eval_every=max(1, min(50, args.steps // 5)), seed=args.seed,
        device=args.device, diameter_A=args.diameter,
    )
    negatives = read_picks(args.negatives) if args.negatives else None  # an empty file is an error there
    if negatives is not None:
        kept = match_micrograph_names(negatives, [str(m) for m in micrographs], on_unknown="drop")
        where = " ".join(str(n) for n in args.negatives)
        if kept.empty:
            raise PixerError(f"{where}: none of its {len(negatives)} negatives names one of the {len(micrographs)} "
                             "micrographs given (check the micrograph names)")
        if len(kept) < len(negatives):
            print(f"pixer train-classifier: warning: {where}: {len(negatives) - len(kept)} of {len(negatives)} "
                  "negatives name no micrograph given; they are left out", file=sys.stderr)
    crops, labels, groups, apix_used = classifier_crops(micrographs, picks, args.diameter, config, apix=args.apix,
                                                        junk_masks=args.junk_masks, progress=not args.no_progress,
                                                        negatives=negatives)  # fmt: skip
    config.apix = apix_used
    if not (labels == 1).any():
        why = ("no crop could be cut at the negatives (on a particle or off the micrograph)" if args.negatives
               else "the --junk-masks folder has no mask for these micrographs, or they are empty" if args.junk_masks
               else "give --junk-masks or --negatives")
        print(f"pixer train-classifier: warning: no interference crops ({why})", file=sys.stderr)
    metrics = train_classifier(crops, labels, groups, args.out, config, progress=not args.no_progress)
    write_run_record(args.out, "train-classifier", args, n_micrographs=len(micrographs), n_particles=len(picks),
                     apix_used=apix_used, metrics=metrics)
    print(json.dumps({k: metrics[k] for k in ("val_accuracy", "confusion", "counts", "seconds")}))
    return 0
