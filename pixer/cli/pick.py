"""Pick particles on micrographs with a trained model.

Each micrograph is binned so the particle spans the model's particle size in
pixels, normalised, segmented in overlapping tiles (512 px, stride 256,
overlaps averaged) into a particle-probability map, and PIXER's grid-based
local-maximum search (grid cell, window and overlap suppression scaled to the
diameter) turns the map into centres with scores. Outputs in --out: RELION
coordinate STARs (coords/, with coords_suffix_pixer.star and autopick.star),
micrographs.star, one RELION 3.1 particles.star, picks_topaz.txt, EMAN box/,
picks.csv, summary.csv (micrograph, picks, threshold, seconds) and failed.csv.
Rerunning the same command skips micrographs already done.

example:
  pixer pick --micrographs 'data/*.mrc' --model model --diameter 120 --out picks
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import pandas as pd
import torch
from tqdm import tqdm

from pixer.cli._common import positive_float, positive_int, write_run_record
from pixer.errors import PixerError
from pixer.io.micrographs import list_micrographs
from pixer.io.paths import atomic_path
from pixer.models.store import load_model
from pixer.pick.batch import gather_parts, pick_file, write_outputs
from pixer.pick.picker import PickParams


def add_args(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``pixer pick``."""
    parser.add_argument("--micrographs", required=True, nargs="+",
                        help="micrographs: folder, glob, file(s) or a RELION micrographs STAR")
    parser.add_argument("--model", required=True, help="model folder written by pixer train")
    parser.add_argument("--diameter", type=positive_float, required=True, help="particle diameter in Å")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--apix", type=positive_float, default=None,
                        help="micrograph pixel size in Å/px (default: from the MRC header)")
    parser.add_argument("--threshold", type=float, default=0.5,
                        help="minimum score (peak probability, 0-1) of a pick (default 0.5)")
    parser.add_argument("--min-distance", type=positive_float, default=None,
                        help="minimum distance between picks in Å (default: the search's overlap rule)")
    parser.add_argument("--max-picks", type=positive_int, default=None, help="cap on picks per micrograph")
    parser.add_argument("--batch-size", type=positive_int, default=8, help="tiles per forward pass (default 8)")
    parser.add_argument("--device", default="auto", help="torch device: auto, cpu, cuda, cuda:1 ... (default auto)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def resolve_device(name: str) -> str:
    """``auto`` → ``cuda`` when available, else ``cpu``."""
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return name


def main(args: argparse.Namespace) -> int:
    """Run ``pixer pick``."""
    out = Path(args.out)
    paths = list_micrographs(args.micrographs)
    device = resolve_device(args.device)
    model, config = load_model(args.model, device=device)
    if "particle_px" not in config or config["particle_px"] is None:
        raise PixerError(f"{args.model}: model config has no particle_px (not a pixer segmentation model?)")
    params = PickParams(diameter_A=args.diameter, threshold=args.threshold, min_distance_A=args.min_distance,
                        max_picks=args.max_picks, batch_size=args.batch_size)
    names = [str(p) for p in paths]
    rows = []
    t0 = time.perf_counter()
    bar = tqdm(paths, desc="pick", unit="mic", disable=args.no_progress)
    for path, name in zip(bar, names):
        rows.append(pick_file(path, out, model, config, params, apix=args.apix, device=device, name=name))
        bar.set_postfix(picks=rows[-1]["n_picks"])
    summary = pd.DataFrame(rows)
    failed = summary[summary["status"] == "failed"]
    with atomic_path(out / "failed.csv") as tmp:
        failed[["micrograph", "error"]].to_csv(tmp, index=False)
    done = summary[summary["status"] != "failed"]
    if done.empty:
        raise PixerError(f"{args.micrographs[0]}: every micrograph failed, first error: {failed['error'].iloc[0]}")
    apix = args.apix or float(done["apix"].dropna().median())
    picks = gather_parts(out, list(done["micrograph"]))
    outputs = write_outputs(out, picks, list(done["micrograph"]), apix, args.diameter, summary)
    seconds = time.perf_counter() - t0
    write_run_record(out, "pick", args, apix=apix, device=device, model_config=config,
                     n_micrographs=len(paths), n_failed=len(failed), n_picks=len(picks), seconds=seconds)
    print(f"picked {len(picks)} particles on {len(done)} micrographs in {seconds:.1f} s "
          f"({len(done) / max(seconds, 1e-9):.2f} micrographs/s); outputs in {out}")
    for f in failed.itertuples():
        print(f"failed: {f.error}")
    print(json.dumps({k: str(v) for k, v in outputs.items()}, indent=2))
    return 0
