"""What a ``pixer pick`` output folder holds, read back for a report or a benchmark.

A run folder has ``picks.csv`` (the picks at the run's threshold),
``summary.csv`` (one row per micrograph: status, picks, candidates, threshold,
seconds, pixel size), ``failed.csv`` (micrograph, reason), ``pixer_pick.json``
(arguments, threshold and how it was chosen, pixel size, the model's config)
and ``parts/`` (every candidate above the candidate floor, per micrograph).
Only ``picks.csv`` or ``summary.csv`` is required; whatever else is missing
is left empty.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from pixer.errors import PixerError, file_error
from pixer.evaluate.matching import mic_key
from pixer.io.coords import read_csv
from pixer.io.micrographs import list_micrographs
from pixer.pick.batch import gather_parts

__all__ = ["PickRun", "find_micrographs", "load_run"]

#: Columns ``summary.csv`` must have.
SUMMARY_COLUMNS = ("micrograph", "status")


@dataclass
class PickRun:
    """A ``pixer pick`` output folder, read.

    Attributes
    ----------
    folder
        The run folder.
    record
        ``pixer_pick.json`` (empty when absent).
    summary
        ``summary.csv``: one row per micrograph (``micrograph``, ``status``,
        ``n_picks``, ...); built from the picks when absent.
    failed
        ``failed.csv``: ``micrograph``, ``error``.
    picks
        Picks at the run's threshold (micrograph px).
    candidates
        Every stored candidate (``parts/``), or None when the run kept none.
    model_config
        The model's ``config.json`` (from the record, else the model folder), or {}.
    """

    folder: Path
    record: dict
    summary: pd.DataFrame
    failed: pd.DataFrame
    picks: pd.DataFrame
    candidates: pd.DataFrame | None
    model_config: dict = field(default_factory=dict)

    @property
    def arguments(self) -> dict:
        """The ``pixer pick`` arguments of the run."""
        return dict(self.record.get("arguments") or {})

    @property
    def threshold(self) -> float | None:
        """The score threshold the run applied (record, else summary.csv)."""
        value = self.record.get("threshold")
        if value is None and "threshold" in self.summary and self.summary["threshold"].notna().any():
            value = self.summary["threshold"].dropna().iloc[0]
        return None if value is None else float(value)

    @property
    def apix(self) -> float | None:
        """Micrograph pixel size in Å/px (record, else the summary's median)."""
        value = self.record.get("apix")
        if value is None and "apix" in self.summary and self.summary["apix"].notna().any():
            value = float(self.summary["apix"].dropna().median())
        return None if value is None or not math.isfinite(float(value)) else float(value)

    @property
    def diameter_A(self) -> float | None:
        """Particle diameter in Å given to ``pixer pick``."""
        value = self.arguments.get("diameter")
        return None if value is None else float(value)

    def done(self) -> list[str]:
        """Names of the micrographs picked (done or skipped on resume), in summary order."""
        ok = self.summary[self.summary["status"].astype(str) != "failed"]
        return [str(m) for m in ok["micrograph"]]


def _read_csv(path: Path, required: Sequence[str] = ()) -> pd.DataFrame | None:
    """A CSV of the run folder (None when absent); a PixerError when unreadable or a column of
    ``required`` is missing."""
    if not path.is_file():
        return None
    try:
        table = pd.read_csv(path, dtype={"micrograph": str, "error": str}, keep_default_na=False,
                            na_values=[""])  # fmt: skip
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise file_error(path, f"not a readable CSV ({type(exc).__name__})") from None
    missing = [c for c in required if c not in table.columns]
    if missing:
        found = ", ".join(map(str, table.columns)) or "none"
        raise file_error(path, f"missing column(s) {', '.join(missing)} (found: {found[:200]})")
    return table


def _model_config(record: dict) -> dict:
    config = record.get("model_config")
    if isinstance(config, dict) and config:
        return config
    model = (record.get("arguments") or {}).get("model")
    path = Path(model) / "config.json" if model else None
    if path is not None and path.is_file():
        try:
            return json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            return {}
    return {}


def load_run(folder: str | Path) -> PickRun:
    """Read a ``pixer pick`` output folder.

    Raises
    ------
    PixerError
        The folder does not exist or holds neither ``picks.csv`` nor ``summary.csv``;
        ``summary.csv`` or ``picks.csv`` is unreadable or lacks a column it must have
        (``micrograph``, ``status``; ``micrograph``, ``x``, ``y``).
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise file_error(folder, "no such pick folder (expected the --out folder of pixer pick)")
    record_path = folder / "pixer_pick.json"
    try:
        record = json.loads(record_path.read_text()) if record_path.is_file() else {}
    except json.JSONDecodeError as exc:
        raise file_error(record_path, f"not valid JSON ({exc.msg}, line {exc.lineno})") from None
    summary = _read_csv(folder / "summary.csv", SUMMARY_COLUMNS)
    picks_path = folder / "picks.csv"
    if picks_path.is_file():
        picks = read_csv(picks_path, allow_empty=True)  # a run may pick nothing: empty, not an error
    elif summary is None:
        raise file_error(folder, "not a pixer pick folder: neither picks.csv nor summary.csv")
    else:
        picks = pd.DataFrame({"micrograph": pd.Series(dtype=str), "x": [], "y": [], "score": []})
    picks["micrograph"] = picks["micrograph"].astype(str)
    if summary is None:
        counts = picks["micrograph"].value_counts(sort=False)
        summary = pd.DataFrame({"micrograph": counts.index, "status": "done", "n_picks": counts.to_numpy()})
    summary["micrograph"] = summary["micrograph"].astype(str)
    failed = _read_csv(folder / "failed.csv")
    if failed is None:
        failed = summary.loc[summary["status"] == "failed", [c for c in ("micrograph", "error") if c in summary]]
    run = PickRun(folder, record, summary, failed.fillna(""), picks, None, _model_config(record))
    if (folder / "parts").is_dir():
        candidates = gather_parts(folder, run.done())
        run.candidates = candidates if len(candidates) else None
    return run


def find_micrographs(run: PickRun, spec=None) -> dict[str, Path]:
    """Micrograph files of a run, by the run's micrograph names.

    Parameters
    ----------
    run
        The pick run.
    spec
        Micrographs as ``pixer pick --micrographs`` takes them (folder, glob,
        files, STAR), overriding where the run says they are.

    Returns
    -------
    dict
        ``run name -> file`` for every picked micrograph found: by exact path,
        then by :func:`~pixer.evaluate.matching.mic_key`. Without ``spec`` the
        run's ``micrographs.star``, then the names themselves (as paths,
        absolute or relative to the current folder) are tried.
    """
    names = run.done()
    files: list[Path] = []
    sources = [spec] if spec else [run.folder / "micrographs.star"]
    for source in sources:
        try:
            files = list_micrographs(source)
        except PixerError:
            if spec:
                raise
            files = []
    by_key: dict[str, Path] = {}
    for f in files:
        by_key.setdefault(mic_key(str(f)), f)
    found: dict[str, Path] = {}
    for name in names:
        hit = by_key.get(mic_key(name))
        if hit is None and not spec and Path(name).is_file():
            hit = Path(name)
        if hit is not None:
            found[name] = hit
    return found

