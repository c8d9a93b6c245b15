"""Evaluate a picking run on disk: read picks and truth, match, write metrics.

This is the file-level wrapper behind ``pixer evaluate``; the matching and the
metrics themselves live in :mod:`pixer.evaluate.matching` and
:mod:`pixer.evaluate.metrics`.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd

from pixer.errors import PixerError
from pixer.evaluate.matching import check_truth_names
from pixer.evaluate.metrics import evaluate
from pixer.evaluate.plots import plot_pr_curve
from pixer.io.coords import read_csv, read_picks
from pixer.io.paths import atomic_path, write_text_atomic

#: Keys of :func:`pixer.evaluate.metrics.evaluate` that describe the score sweep (the curve), not the picks as kept.
CURVE_KEYS = ("best_f1", "best_threshold", "best_precision", "best_recall", "auprc", "precision_curve",
              "recall_curve", "thresholds")


def read_run_picks(picks: Path) -> tuple[pd.DataFrame, float | None]:
    """Read picks from a ``pixer pick`` folder (``picks.csv``) or any coordinate source.

    Returns the table and the micrograph pixel size the run recorded, if any.
    """
    apix = None
    record = picks / "pixer_pick.json" if picks.is_dir() else None
    if record is not None and record.exists():
        apix = json.loads(record.read_text()).get("apix")
    if picks.is_dir() and (picks / "picks.csv").exists():
        table = read_csv(picks / "picks.csv", allow_empty=True)  # a run may pick nothing: recall 0, not an error
    else:
        table = read_picks(picks)
    return table, apix


def _pick_run(picks: Path):
    """The ``pixer pick`` run in folder ``picks`` (:func:`pixer.report.run.load_run`), or None for any
    other coordinate source. Its ``candidates`` are every candidate the parts store (those above the
    candidate floor), so their scores sweep the whole precision-recall curve, where ``picks.csv``
    holds only the picks above the run's threshold."""
    if not picks.is_dir() or not ((picks / "summary.csv").is_file() or (picks / "parts").is_dir()):
        return None
    from pixer.report.run import load_run

    return load_run(picks)


def _table_apix(table: pd.DataFrame) -> float | None:
    if "apix" in table and table["apix"].notna().any():
        return float(table["apix"].dropna().median())
    return None


def evaluate_run(
    picks: Path,
    truth: str | Path,
    diameter_A: float,
    out: Path,
    apix: float | None = None,
    radius_fraction: float = 0.5,
) -> dict:
    """Evaluate picks against truth and write ``metrics.json``, ``per_micrograph.csv``, ``pr_curve.png``.

    Parameters
    ----------
    picks
        A ``pixer pick`` output folder or any coordinate file/folder/glob.
        Precision, recall and F1 are those of the picks as they are; for a
        ``pixer pick`` folder the curve (best F1, its threshold, AUPRC,
        ``pr_curve.png``) sweeps every candidate stored in ``parts/``, so it
        shows what another threshold would give (``curve_from`` says which).
    truth
        True coordinates in any format :func:`pixer.io.coords.read_picks` reads.
    diameter_A
        Particle diameter in Å; the match radius is ``radius_fraction × diameter``.
    apix
        Micrograph pixel size in Å/px; default: the pick run's record, else the
        truth file's pixel size.

    Returns
    -------
    dict
        The metrics written to ``metrics.json``; ``warnings`` lists a partial pairing of the
        picked micrographs with the truth's (:func:`~pixer.evaluate.matching.check_truth_names`).

    Raises
    ------
    PixerError
        Unreadable input, no pixel size, or picks and truth that share no micrograph.
    """
    picks_df, run_apix = read_run_picks(Path(picks))
    truth_df = read_picks(truth)
    apix = apix or run_apix or _table_apix(truth_df) or _table_apix(picks_df)
    if apix is None or not math.isfinite(apix):
        raise PixerError(f"{truth}: micrograph pixel size unknown: pass --apix")
    diameter_px = diameter_A / apix
    if "score" not in picks_df or picks_df["score"].isna().all():
        picks_df = picks_df.assign(score=1.0)
    run = _pick_run(Path(picks))  # read once: its micrographs (those without picks too) and candidates
    names = picks_df["micrograph"].astype(str) if "micrograph" in picks_df else pd.Series(dtype=str)
    picked = run.done() if run is not None else [str(m) for m in pd.unique(names)]
    partial = check_truth_names(picked, truth_df, f"micrographs picked in {picks}", str(truth))
    result = evaluate(picks_df, truth_df, diameter_px=diameter_px, radius_fraction=radius_fraction)
    candidates = run.candidates if run is not None and (Path(picks) / "parts").is_dir() else None
    if candidates is not None:
        curve = evaluate(candidates, truth_df, diameter_px=diameter_px, radius_fraction=radius_fraction)
        result.update({k: curve[k] for k in CURVE_KEYS})
        result["curve_from"] = f"{len(candidates)} stored candidates (parts/)"
    else:
        result["curve_from"] = "the picks"
    out.mkdir(parents=True, exist_ok=True)
    per_mic = result.pop("per_micrograph")
    with atomic_path(out / "per_micrograph.csv") as tmp:
        per_mic.to_csv(tmp, index=False, float_format="%.4f")
    precision, recall = np.asarray(result.pop("precision_curve")), np.asarray(result.pop("recall_curve"))
    result.pop("thresholds", None)
    plot_pr_curve({f"pixer (AUPRC {result['auprc']:.3f})": (precision, recall)}, out / "pr_curve.png")
    result.update(apix=apix, diameter_A=diameter_A, radius_px=radius_fraction * diameter_px,
                  warnings=[partial] if partial else [])
    clean = {k: (float(v) if isinstance(v, (np.floating, np.integer)) else v) for k, v in result.items()}
    write_text_atomic(out / "metrics.json", json.dumps(clean, indent=2) + "\n")
    return clean
