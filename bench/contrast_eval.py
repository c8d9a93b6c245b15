"""Particle contrast: F1 of ``pixer pick`` on simulated sets stored inverted, with and without the check.

For each ``pixer simulate`` folder given, the micrographs are written negated (same pixel size)
under ``--work``, then picked three ways with the defaults otherwise: as simulated, inverted with
``--polarity dark`` (no check: what pixer did before the check), and inverted with the default
``--polarity auto``; each is scored with ``pixer evaluate`` against the simulation's truth.

Usage (the table in docs/general_model.md, "Particle contrast")::

    python bench/contrast_eval.py --work /tmp/contrast \\
        /tmp/pixer_general_work/eval/apoferritin_10dB /tmp/pixer_general_work/eval/small_10dB \\
        /tmp/pixer_general_work/eval/ribosome_15dB
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import mrcfile
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from pixer.cli.main import main as pixer  # noqa: E402


def invert_folder(src: Path, dest: Path) -> None:
    """Every ``*.mrc`` of ``src`` negated into ``dest`` (voxel size kept)."""
    dest.mkdir(parents=True, exist_ok=True)
    for path in sorted(src.glob("*.mrc")):
        with mrcfile.open(path, permissive=True) as m:
            data, voxel = np.asarray(m.data, dtype=np.float32), m.voxel_size
        with mrcfile.new(dest / path.name, overwrite=True) as m:
            m.set_data(-data)
            m.voxel_size = voxel


def run(sim: Path, work: Path) -> dict:
    d = float(json.loads((sim / "simulation.json").read_text())["particle_diameter_A"])
    inverted = work / sim.name / "inverted"
    invert_folder(sim / "micrographs", inverted)
    row = {"set": sim.name, "diameter_A": d}
    for name, folder, extra in (("as simulated", sim / "micrographs", []), ("inverted, dark", inverted,
                                ["--polarity", "dark"]), ("inverted, auto", inverted, [])):  # fmt: skip
        out = work / sim.name / name.replace(", ", "_").replace(" ", "_")
        assert pixer(["pick", "--micrographs", str(folder), "--diameter", f"{d:g}", "--out", str(out),
                      "--cluster", "none", "--no-progress", *extra]) == 0  # fmt: skip
        assert pixer(["evaluate", "--picks", str(out), "--truth", str(sim / "particles.star"), "--diameter",
                      f"{d:g}", "--out", str(out / "eval")]) == 0  # fmt: skip
        f1 = json.loads((out / "eval" / "metrics.json").read_text())["f1"]
        contrast = json.loads((out / "pixer_pick.json").read_text())["contrast"]
        row[name] = f"{f1:.3f} ({contrast['polarity']})"
    return row


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("sims", nargs="+", type=Path, help="pixer simulate output folders")
    p.add_argument("--work", type=Path, required=True)
    a = p.parse_args()
    rows = [run(s, a.work) for s in a.sims]
    cols = ["set", "as simulated", "inverted, dark", "inverted, auto"]
    print("| " + " | ".join(cols) + " |\n|" + "---|" * len(cols))
    for r in rows:
        print("| " + " | ".join(str(r[c]) for c in cols) + " |")


if __name__ == "__main__":
    main()
