"""Write one self-contained HTML page about a pixer pick run, to open in a browser.

The page holds picks drawn on a sample of micrographs (low-pass filtered; with
--truth: true positives green, false positives red, missed particles yellow),
the candidate-score histogram with the run's threshold, picks per micrograph,
with --truth the precision-recall curve and precision / recall / F1 / AUPRC,
failed micrographs with their reasons, and the run's and the model's
configuration. Pictures are embedded: the file can be mailed or archived
alone. --truth takes coordinates in any format pixer reads, or a folder of
particle masks (filled discs) named like the micrographs.

The page is best-effort: a micrograph that cannot be read is noted on the page
and in one "warning:" line on stderr, as are micrographs the truth does not
cover; a truth that names none of the run's micrographs is an error.

example:
  pixer report --picks picks --out picks/report.html
  pixer report --picks picks --truth truth/particles.star --sample 8 --out report.html
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pixer.cli._common import nonnegative_int, positive_float, write_run_record
from pixer.report import build_report


def add_args(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``pixer report``."""
    parser.add_argument("--picks", required=True, help="output folder of pixer pick")
    parser.add_argument("--out", required=True, help="HTML file to write, e.g. report.html")
    parser.add_argument("--truth", nargs="+", default=None,
                        help="true particle coordinates (file, folder, glob) or a folder of masks: adds accuracy")
    parser.add_argument("--diameter", type=positive_float, default=None,
                        help="particle diameter in Å (default: the run's --diameter)")
    parser.add_argument("--micrographs", nargs="+", default=None,
                        help="where the micrographs are (folder, glob, files, STAR; default: the run's "
                             "micrographs.star)")
    parser.add_argument("--apix", type=positive_float, default=None,
                        help="micrograph pixel size in Å/px (default: the run's)")
    parser.add_argument("--sample", type=nonnegative_int, default=6, help="micrographs drawn (default 6)")
    parser.add_argument("--radius-fraction", type=positive_float, default=0.5,
                        help="match radius as a fraction of the diameter (default 0.5)")


def main(args: argparse.Namespace) -> int:
    """Run ``pixer report``."""
    out = Path(args.out)
    summary = build_report(args.picks, out, truth=args.truth, diameter_A=args.diameter, micrographs=args.micrographs,
                           apix=args.apix, sample=args.sample, radius_fraction=args.radius_fraction)
    write_run_record(out.parent, "report", args)
    for line in summary.pop("warnings", []):
        print(f"pixer report: warning: {line}", file=sys.stderr)
    facts = ", ".join(f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}"
                      for k, v in summary.items() if not isinstance(v, (dict, list)))
    print(f"report written to {out} ({facts})")
    return 0
