"""Score picks against ground truth.

One-to-one (Hungarian) matching of picks to true centres within
0.5 × diameter per micrograph; precision, recall and F1 at the picks' own
threshold and at the F1-optimal one, and the area under the precision-recall
curve (AUPRC) over score thresholds. For a pixer pick folder the curve and
its best F1 sweep every candidate the run stored (parts/), not only the picks
above its threshold. Writes metrics.json, per_micrograph.csv and pr_curve.png.

example:
  pixer evaluate --picks picks/ --truth sim/particles.star --diameter 120 --out eval
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from pixer.cli._common import positive_float, write_run_record
from pixer.evaluate.report import evaluate_run


def add_args(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``pixer evaluate``."""
    parser.add_argument("--picks", required=True,
                        help="a pixer pick output folder, or any coordinate file/folder/glob")
    parser.add_argument("--truth", required=True, help="true coordinates: STAR, Topaz, .box, CSV, folder or glob")
    parser.add_argument("--diameter", type=positive_float, required=True, help="particle diameter in Å")
    parser.add_argument("--apix", type=positive_float, default=None,
                        help="micrograph pixel size in Å/px (default: from the files)")
    parser.add_argument("--radius-fraction", type=positive_float, default=0.5,
                        help="match radius as a fraction of the diameter (default 0.5)")
    parser.add_argument("--out", required=True, help="output folder")


def main(args: argparse.Namespace) -> int:
    """Run ``pixer evaluate``."""
    metrics = evaluate_run(
        Path(args.picks), args.truth, diameter_A=args.diameter, out=Path(args.out),
        apix=args.apix, radius_fraction=args.radius_fraction,
    )
    write_run_record(args.out, "evaluate", args)
    print(json.dumps({k: v for k, v in metrics.items() if not isinstance(v, (list, dict))}, indent=2))
    for line in metrics.get("warnings", []):
        print(f"pixer evaluate: warning: {line}", file=sys.stderr)
    return 0
