"""Benchmark picking on several data sets listed in a samplesheet; one comparison table.

The samplesheet is a CSV with one data set per row: dataset (id), micrographs
(folder, glob, file or STAR), apix (Å/px; empty when the files carry it),
diameter (Å), and optionally truth (coordinates, or a folder of particle
masks), model (a model folder for that row) and peers (e.g. relion,topaz).
Relative paths resolve against the samplesheet's folder; every row is checked
before any work. Per data set pixer pick runs into OUT/<dataset>/pixer
(rerunning resumes) and is scored against the truth: precision / recall / F1
at the run's own threshold, best F1 and AUPRC over every candidate. Peers run
through bench/compare_peers.py when it offers them and they are installed;
otherwise the table says "not available". The peer lattice is built in: the
chance level, an image-blind hexagonal lattice of picks, to read F1 against on
densely packed data. Written: OUT/benchmark.csv,
OUT/benchmark.md and OUT/benchmark.png (bar plot of best F1 / AUPRC / F1 at
the default threshold per data set and picker). See docs/benchmark.md.

Every failed or unavailable (data set, picker) is also one "warning:" line on
stderr. Exit status: 0 when pixer ran on every data set (a peer that failed
or is not installed is only a warning); 1 when pixer failed on some data set
(the table is written all the same); 2 on a bad samplesheet or argument, or
when every row failed.

example:
  pixer benchmark --samplesheet samplesheet.csv --model model --out bench_out
  pixer benchmark --samplesheet cryoppp.csv --model model --out bench_out --peers relion,topaz,lattice --cluster none
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd

from pixer.cli._common import positive_int, write_run_record
from pixer.cli.pick import CLUSTER_KINDS
from pixer.errors import PixerError
from pixer.evaluate.benchmark import (
    KNOWN_PEERS,
    parse_peers,
    read_samplesheet,
    run_benchmark,
    write_table,
)


def peers_arg(text: str) -> tuple[str, ...]:
    """argparse type: comma-separated peer names."""
    try:
        return parse_peers(text)
    except PixerError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_args(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``pixer benchmark``."""
    parser.add_argument("--samplesheet", required=True, help="CSV, one data set per row (see docs/benchmark.md)")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--model", default=None,
                        help="pixer model folder (or 'general') for rows without a model column "
                             "(default: the general model shipped with pixer)")
    parser.add_argument("--peers", type=peers_arg, default=(),
                        help=f"other pickers for rows without a peers value, comma-separated ({','.join(KNOWN_PEERS)})")
    pick = parser.add_argument_group("passed to pixer pick")
    pick.add_argument("--cluster", choices=CLUSTER_KINDS, default="local", help="see pixer pick (default local)")
    pick.add_argument("--workers", type=positive_int, default=None, help="see pixer pick")
    pick.add_argument("--device", default="auto", help="torch device (default auto)")
    pick.add_argument("--no-progress", action="store_true", help="no progress bars")


def report_failures(table: pd.DataFrame) -> bool:
    """Print one ``warning:`` line to stderr per (data set, picker) that failed or is not
    available; return whether pixer itself failed on some data set."""
    bad = table[~table["status"].astype(str).eq("ok")]
    for row in bad.itertuples(index=False):
        print(f"pixer benchmark: warning: {row.dataset} / {row.picker}: {row.status}", file=sys.stderr)
    return bool(((bad["picker"] == "pixer") & bad["status"].astype(str).str.startswith("failed")).any())


def main(args: argparse.Namespace) -> int:
    """Run ``pixer benchmark``; exit status 1 when pixer failed on some data set (see the module help)."""
    datasets = read_samplesheet(args.samplesheet, model=args.model, peers=args.peers)
    options = ["--cluster", args.cluster, "--device", args.device,
               *(["--workers", str(args.workers)] if args.workers else []),
               *(["--no-progress"] if args.no_progress else [])]  # fmt: skip
    table = run_benchmark(datasets, args.out, pick_options=options)
    paths = write_table(table, args.out)
    write_run_record(args.out, "benchmark", args, datasets=[d.name for d in datasets])
    print(Path(paths["markdown"]).read_text(), end="")
    print(f"written: {', '.join(str(p) for p in paths.values())}", flush=True)
    pixer_failed = report_failures(table)
    if (table["status"].str.startswith("failed")).all():
        raise PixerError(f"{args.samplesheet}: every data set failed, first: {table['status'].iloc[0]}")
    return 1 if pixer_failed else 0
