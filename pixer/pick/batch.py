"""Picking over many micrographs with resume and atomic per-micrograph results.

``pick_file`` handles one micrograph path end to end and leaves its result in
``<out>/parts/<name>.csv`` (atomic; its presence means "done"); it is the unit
of work that a scheduler (a plain loop here, Dask in :mod:`pixer.scale`) maps
over paths. ``write_outputs`` then gathers the parts into the formats users
import: RELION coordinate STARs + list files, one RELION 3.1 particles STAR,
Topaz txt, EMAN .box, CSV and a summary table.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from pixer.errors import PixerError
from pixer.io.coords import write_box, write_csv, write_relion_coords, write_topaz
from pixer.io.micrographs import read_micrograph, write_micrographs_star
from pixer.io.paths import atomic_path, output_path
from pixer.io.star import write_particles_star
from pixer.pick.picker import PickParams, pick_image

PART_COLUMNS = ["micrograph", "x", "y", "score"]


def part_path(outdir: str | Path, name: str) -> Path:
    """Where the per-micrograph result of ``name`` lives inside ``outdir``."""
    return output_path(Path(outdir) / "parts", name, ".csv")


def pick_file(
    path: str | Path,
    outdir: str | Path,
    model,
    config: dict,
    params: PickParams,
    apix: float | None = None,
    device: str = "cpu",
    name: str | None = None,
) -> dict:
    """Pick one micrograph file and store its picks atomically.

    Skips the work when the part file already exists (resume).

    Returns
    -------
    dict
        Summary row: ``micrograph``, ``n_picks``, ``threshold``, ``seconds``,
        ``apix``, ``status`` (``done``, ``skipped`` or ``failed``), ``error``.
    """
    name = name or str(path)
    part = part_path(outdir, name)
    row = {"micrograph": name, "threshold": params.threshold, "error": ""}
    if part.exists():
        picks = pd.read_csv(part, comment="#")
        return {**row, "n_picks": len(picks), "seconds": 0.0, "apix": _part_apix(part, picks), "status": "skipped"}
    t0 = time.perf_counter()
    try:
        mic = read_micrograph(path, apix=apix)
        if mic.apix is None:
            raise PixerError(f"{path}: pixel size unknown (not in the header): pass --apix")
        picks, _, _ = pick_image(mic.data, mic.apix, model, config, params, device=device)
    except PixerError as exc:
        return {**row, "n_picks": 0, "seconds": time.perf_counter() - t0, "apix": float("nan"),
                "status": "failed", "error": str(exc)}
    picks.insert(0, "micrograph", name)
    with atomic_path(part) as tmp:
        with open(tmp, "w") as fh:
            fh.write(f"# apix={mic.apix!r}\n")
            picks[PART_COLUMNS].to_csv(fh, index=False, float_format="%.3f")
    return {**row, "n_picks": len(picks), "seconds": time.perf_counter() - t0, "apix": mic.apix, "status": "done"}


def _part_apix(part: Path, picks: pd.DataFrame) -> float:
    """Pixel size stored in a part file (its first line's ``# apix=`` comment)."""
    with open(part) as fh:
        first = fh.readline()
    return float(first.split("=", 1)[1]) if first.startswith("# apix=") else float("nan")


def gather_parts(outdir: str | Path, names: Sequence[str]) -> pd.DataFrame:
    """Concatenate the part files of ``names`` (those that exist) into one table."""
    frames = [pd.read_csv(p, comment="#") for n in names if (p := part_path(outdir, n)).exists()]
    if not frames:
        return pd.DataFrame({c: pd.Series(dtype=float if c != "micrograph" else str) for c in PART_COLUMNS})
    picks = pd.concat([f for f in frames if len(f)] or frames[:1], ignore_index=True)
    picks["micrograph"] = picks["micrograph"].astype(str)
    return picks


def write_outputs(
    outdir: str | Path,
    picks: pd.DataFrame,
    names: Sequence[str],
    apix: float,
    diameter_A: float,
    summary: pd.DataFrame,
) -> dict[str, Path]:
    """Write every user-facing output format for a finished run.

    Returns a mapping of output kind to path.
    """
    outdir = Path(outdir)
    box_px = int(round(1.5 * diameter_A / apix / 2)) * 2
    mic_star = outdir / "micrographs.star"
    write_micrographs_star([Path(n) for n in names], mic_star, apix=apix)
    picks = picks.copy()
    picks["apix"] = apix
    out = {
        "micrographs_star": mic_star,
        "relion_coords": write_relion_coords(picks, outdir / "coords", suffix="_pixer",
                                             micrographs_star=str(mic_star)),
        "particles_star": write_particles_star(picks, outdir / "particles.star", apix=apix, box_size=box_px),
        "topaz": write_topaz(picks, outdir / "picks_topaz.txt"),
        "box": outdir / "box",
        "csv": write_csv(picks, outdir / "picks.csv"),
    }
    summary_path = outdir / "summary.csv"
    with atomic_path(summary_path) as tmp:
        summary.to_csv(tmp, index=False, float_format="%.4g")
    write_box(picks, out["box"], box_px)
    out["summary"] = summary_path
    return out
