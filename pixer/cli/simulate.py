"""Simulate micrographs with exact ground truth.

Particles of a density (a built-in pseudo-atomic demo model, an MRC map or an
atomic model) are projected at uniform random orientations (RELION ZYZ
convention), modulated by a CTF, summed with interference (carbon edge, ice
gradient, contaminant blobs, aggregates; optionally small debris) and white noise at the requested SNR
(10·log10 signal power / noise power). Writes MRC micrographs, a RELION 3.1
particles STAR, per-micrograph coordinates, clean projections, particle masks
and the map used. Same --seed gives identical files.

example:
  pixer simulate --out sim --n 8 --size 1024 --apix 2.0 --snr-db -10 --seed 0
  pixer simulate --out sim_cftr --n 4 --pdb 6msm.pdb --apix 1.5 --snr-db -15
"""

from __future__ import annotations

import argparse
import json

from pixer.cli._common import (
    finite_float,
    nonnegative_float,
    nonnegative_int,
    positive_float,
    positive_int,
    write_run_record,
)
from pixer.errors import PixerError
from pixer.simulate.dataset import SNR_DB_LIMIT, simulate_dataset
from pixer.simulate.micrograph import DEFAULT_INTERFERENCE


def add_args(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``pixer simulate``."""
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--n", type=positive_int, default=4, help="number of micrographs (default 4)")
    parser.add_argument("--size", type=positive_int, default=1024, help="micrograph size in pixels (square)")
    parser.add_argument("--apix", type=positive_float, default=2.0, help="pixel size in Å/px (default 2.0)")
    parser.add_argument("--snr-db", type=finite_float, default=-10.0,
                        help=f"SNR in dB, 10·log10(Ps/Pn), within ±{SNR_DB_LIMIT:g} (default -10)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    src = parser.add_mutually_exclusive_group()
    src.add_argument("--map", help="density map (MRC) to project")
    src.add_argument("--pdb", help="atomic model (PDB/mmCIF) to turn into density")
    src.add_argument("--demo", default="apoferritin", help="built-in pseudo-atomic model (default apoferritin)")
    parser.add_argument("--particles", type=nonnegative_int, default=None,
                        help="particles per micrograph (default: from size and particle diameter; "
                             "0 makes empty micrographs, a negative control)")
    parser.add_argument("--min-distance", type=positive_float, default=None,
                        help="least distance between particle centres in Å (default: the particle diameter; "
                             "smaller values pack particles so that they touch, as on crowded grids)")
    parser.add_argument("--no-interference", action="store_true", help="no carbon, ice, contaminants")
    parser.add_argument("--debris", type=nonnegative_float, default=0.0, metavar="MEAN",
                        help="small dark debris (specks and strands under ~1.5 particle diameters, a common "
                             "false positive on real micrographs): Poisson mean per micrograph, at most 1000 "
                             "(default 0)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def _interference(args: argparse.Namespace) -> bool | dict:
    """The simulator's ``interference`` argument from ``--no-interference`` and ``--debris``."""
    if args.no_interference:
        return {**dict.fromkeys(DEFAULT_INTERFERENCE, 0.0), "debris": args.debris} if args.debris > 0 else False
    return {"debris": args.debris} if args.debris > 0 else True


#: Most debris (Poisson mean per micrograph) ``--debris`` takes: already far more than real grids show.
MAX_DEBRIS = 1000.0


def main(args: argparse.Namespace) -> int:
    """Run ``pixer simulate``."""
    if args.debris > MAX_DEBRIS:
        raise PixerError(f"--debris {args.debris:g}: at most {MAX_DEBRIS:g} per micrograph")
    summary = simulate_dataset(
        args.out,
        n=args.n,
        size=args.size,
        apix=args.apix,
        snr_db=args.snr_db,
        seed=args.seed,
        map_path=args.map,
        pdb_path=args.pdb,
        demo=args.demo,
        particles_per_micrograph=args.particles,
        min_distance_A=args.min_distance,
        interference=_interference(args),
        progress=not args.no_progress,
    )
    write_run_record(args.out, "simulate", args)
    print(json.dumps(summary, indent=2, default=str))
    return 0
