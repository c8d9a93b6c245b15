"""Best F1 against the matching radius, with the chance level, on the CryoPPP test splits.

Reads the runs ``bench/eval_real.py --stages test`` left under ``--work`` (pixer pick folders,
RELION's permissive ``curve`` run, Topaz's picks) and scores each at several matching radii
(fractions of the masks' diameter) with ``pixer.evaluate.evaluate``; adds the image-blind
hexagonal lattice (``pixer.evaluate.baseline.chance_level``) and the median distance of matched
picks (the strongest ``n_true`` picks, matched within 0.5 d) as a localisation figure.

Example (the table of docs/real_data.md, "Chance level")::

    python bench/radius_eval.py --runs 10028=pixer_general_edge0.5_f0.9 10059=pixer_general_edge0.5_f0.9 \\
        10947=pixer_general_edge0.5_f0.7 --runs 10028=pixer_ftg_edge0.5_f0.9 ...
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from eval_real import APIX, DIAMETER_PX, read_any, truth_of

from pixer.evaluate.baseline import chance_level, micrograph_shapes
from pixer.evaluate.matching import match_tables
from pixer.evaluate.metrics import evaluate
from pixer.report.run import load_run


def candidates(folder: Path) -> pd.DataFrame:
    """A pixer pick folder's stored candidates, else any coordinate file/folder (peers)."""
    if (folder / "pixer_pick.json").is_file():
        c = load_run(folder).candidates
        return c.assign(micrograph=c["micrograph"].map(lambda s: Path(str(s)).name))
    return read_any(folder)


def median_error(picks: pd.DataFrame, truth: pd.DataFrame, diameter_px: float) -> float:
    """Median distance (px) of the strongest ``len(truth)`` picks matched within 0.5 d."""
    top = picks.sort_values("score", ascending=False).head(len(truth))
    matched = match_tables(top, truth, 0.5 * diameter_px)[0].query("tp")
    if matched.empty:
        return float("nan")
    t = truth[["x", "y"]].to_numpy()[matched["truth_row"].to_numpy()]
    return float(np.median(np.hypot(*(matched[["x", "y"]].to_numpy() - t).T)))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--work", default="/tmp/pixer_real")
    p.add_argument("--runs", nargs="+", action="append", default=[], metavar="DS=SUBDIR",
                   help="pixer runs under WORK/test/DS/ (one --runs per picker row)")
    p.add_argument("--peers", nargs="*", default=["relion/curve/micrographs", "topaz/picks_topaz.txt"],
                   help="peer outputs under WORK/test/DS/")
    p.add_argument("--radii", type=float, nargs="+", default=[0.2, 0.25, 0.35, 0.5])
    a = p.parse_args()
    work = Path(a.work)
    rows = []
    for ds, d in DIAMETER_PX.items():
        truth = truth_of(work, ds, "test")
        sources = {}
        for group in a.runs:
            sub = dict(r.split("=", 1) for r in group).get(ds)
            if sub:
                sources[f"pixer {sub}"] = work / "test" / ds / sub
        sources.update({peer.split("/")[0]: work / "test" / ds / peer for peer in a.peers})
        for name, path in sources.items():
            if not path.exists():
                print(f"{ds} {name}: {path} missing, skipped", flush=True)
                continue
            c = candidates(path)
            row = {"dataset": ds, "picker": name, "median_error_px": median_error(c, truth, d)}
            row.update({f"best_f1@{r:g}d": evaluate(c, truth, d, radius_fraction=r)["best_f1"] for r in a.radii})
            rows.append(row)
            print(row, flush=True)
        shapes = micrograph_shapes(sorted((work / "mrc" / ds / "test" / "micrographs").glob("*.mrc")), APIX)
        row = {"dataset": ds, "picker": "lattice (chance)", "median_error_px": float("nan")}
        row.update({f"best_f1@{r:g}d": chance_level(truth, shapes, d, radius_fraction=r)["f1"] for r in a.radii})
        rows.append(row)
        print(row, flush=True)
    table = pd.DataFrame(rows)
    table.to_csv(work / "radius_eval.csv", index=False, float_format="%.3f")
    print(table.to_string(index=False, float_format="%.3f"))


if __name__ == "__main__":
    main()
