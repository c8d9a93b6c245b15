"""Picking over many micrographs with resume and atomic per-micrograph results.

``pick_file`` handles one micrograph path end to end and leaves its candidates
in ``<out>/parts/<name>.csv`` (atomic; its presence means "done"); it is the
unit of work that a scheduler (a plain loop, or Dask in :mod:`pixer.scale`)
maps over paths. :class:`PickTask` packs what a worker needs into one small
picklable callable and loads the model once per process (:func:`cached_model`).

A part holds every candidate scoring above a floor (``params.threshold`` at
pick time, :data:`~pixer.pick.threshold.CANDIDATE_FLOOR` under ``pixer pick``),
sorted by descending score, after a ``# apix=<Å/px> floor=<score>`` line; the
user's threshold and per-micrograph cap are applied when parts are gathered
(:func:`gather_parts` then :func:`~pixer.pick.threshold.apply_threshold`), so a
run can be re-thresholded without recomputing. ``write_outputs`` then writes
the formats users import: RELION coordinate STARs + list files, one RELION 3.1
particles STAR, Topaz txt, EMAN .box, CSV and a summary table.
"""

from __future__ import annotations

import functools
import hashlib
import os
import socket
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd

from pixer.errors import PixerError
from pixer.io.coords import write_box, write_csv, write_relion_coords, write_topaz
from pixer.io.micrographs import read_micrograph, require_room, write_micrographs_star
from pixer.io.paths import atomic_path, output_path
from pixer.io.star import write_particles_star
from pixer.pick.picker import PickParams, pick_image

PART_COLUMNS = ["micrograph", "x", "y", "score"]
#: Columns of the rows ``pick_file`` returns (the run's summary table).
SUMMARY_COLUMNS = ["micrograph", "status", "n_candidates", "seconds", "apix", "worker", "slurm_job_id", "error"]


def part_path(outdir: str | Path, name: str) -> Path:
    """Where the per-micrograph result of ``name`` lives inside ``outdir``."""
    return output_path(Path(outdir) / "parts", name, ".csv")


def read_part_header(part: str | Path) -> dict[str, float]:
    """``apix``, ``floor``, ``classified`` (the :func:`weights_stamp` of the
    classifier that filtered the candidates, 0 for none; 1.0 in parts written
    before it was recorded), ``cmin`` and ``cjunk`` (its ``classifier_min`` and
    ``classifier_junk``), ``edge`` (the edge margin, Å), ``mind`` (the minimum
    distance, Å; 0 for none), ``diam`` (the particle diameter, Å), ``area``
    (the picked area in particle areas: :func:`picked_area`) and ``inv`` (1.0
    when the micrograph was inverted: ``PickParams.invert``) and ``model`` (the
    :func:`weights_stamp` of the model that scored it) from a part's first line
    (NaN / 0 when absent)."""
    with open(part) as fh:
        first = fh.readline()
    meta = {"apix": float("nan"), "floor": 0.0, "classified": 0.0, "cmin": 0.0, "cjunk": 0.0, "edge": 0.0,
            "mind": 0.0, "diam": float("nan"), "area": float("nan"), "inv": 0.0, "model": 0.0}
    if first.startswith("#"):
        for item in first[1:].split():
            key, _, value = item.partition("=")
            if key in meta:
                meta[key] = float(value)
    return meta


def weights_stamp(model_dir: str | Path) -> float:
    """A number that changes with a model folder's weights: the first 48 bits of the SHA-256 of its
    ``model.pt`` / ``model.safetensors`` (a classifier folder: ``classifier.pt``; exact in a float64; 0.0
    when none exists)."""
    for name in ("model.pt", "model.safetensors", "classifier.pt"):
        path = Path(model_dir) / name
        if path.is_file():
            digest = hashlib.sha256()
            with open(path, "rb") as fh:
                for block in iter(lambda: fh.read(1 << 20), b""):
                    digest.update(block)
            return float(int(digest.hexdigest()[:12], 16))
    return 0.0


def _classifier_key(params: PickParams, classifier_stamp: float) -> tuple[float, float, float]:
    """``(classified, cmin, cjunk)`` as a part header records them: the classifier's stamp and its rule, or zeros."""
    if not classifier_stamp:
        return 0.0, 0.0, 0.0
    return float(classifier_stamp), float(params.classifier_min), float(params.classifier_junk)


def _reusable(meta: dict[str, float], params: PickParams, classifier_stamp: float = 0.0,
              model_stamp: float = 0.0) -> bool:
    """A part can be reused when its floor is low enough and the same model and classifier
    (:func:`weights_stamp`; the classifier's rule too), diameter, edge margin, minimum distance and contrast
    made it (parts that do not record their diameter and area are not)."""
    return (meta["floor"] <= params.threshold and meta["model"] == float(model_stamp) and bool(np.isfinite(meta["area"]))
            and meta["diam"] == float(params.diameter_A)
            and (meta["classified"], meta["cmin"], meta["cjunk"]) == _classifier_key(params, classifier_stamp)
            and meta["edge"] == float(params.edge_margin_A) and meta["mind"] == float(params.min_distance_A or 0.0)
            and bool(meta["inv"]) == bool(params.invert))


def picked_area(shape: tuple[int, int], apix: float, diameter_A: float, edge_margin_A: float = 0.0) -> float:
    """Area of a micrograph where picks may lie, in particle areas (``d²``).

    Parameters
    ----------
    shape
        ``(h, w)`` micrograph size, pixels.
    apix
        Pixel size, Å/px.
    diameter_A
        Particle diameter, Å.
    edge_margin_A
        Picks closer than this to an edge are dropped, so that band does not count.

    Returns
    -------
    float
        ``(h − 2m)(w − 2m) / d²`` with the margin ``m`` and diameter ``d`` in
        pixels (0 when the margin leaves nothing).
    """
    band = 2.0 * float(edge_margin_A) / float(apix)  # both edges, px
    d = float(diameter_A) / float(apix)
    return max(shape[0] - band, 0.0) * max(shape[1] - band, 0.0) / (d * d)


def run_area(outdir: str | Path, names: Sequence[str]) -> float | None:
    """Summed :func:`picked_area` of the parts of ``names`` (None when a part does not record it)."""
    total = 0.0
    for name in names:
        area = read_part_header(part_path(outdir, name))["area"]
        if not np.isfinite(area):
            return None
        total += area
    return total


def require_apix(mic, path: str | Path, diameter_A: float | None = None) -> None:
    """A one-line error when a micrograph to pick has no pixel size (none in its header, no --apix),
    or, given the particle diameter (Å), is smaller than one particle."""
    if mic.apix is None:
        raise PixerError(f"{path}: pixel size unknown (not in the header): pass --apix")
    if diameter_A is not None:
        require_room(path, mic.data.shape, mic.apix, diameter_A)


def read_part(part: str | Path) -> pd.DataFrame:
    """The candidates stored in a part file (columns :data:`PART_COLUMNS`)."""
    picks = pd.read_csv(part, comment="#", dtype={"micrograph": str})
    missing = [c for c in PART_COLUMNS if c not in picks.columns]
    if missing:
        raise PixerError(f"{part}: not a pixer part file (missing {', '.join(missing)})")
    return picks[PART_COLUMNS]


def worker_info() -> dict[str, str]:
    """Where this code runs: ``worker`` (host:pid) and ``slurm_job_id`` (empty outside SLURM)."""
    return {"worker": f"{socket.gethostname()}:{os.getpid()}", "slurm_job_id": os.environ.get("SLURM_JOB_ID", "")}


def failed_row(name: str, error: str, seconds: float = 0.0) -> dict:
    """Summary row of a micrograph that could not be picked."""
    return {"micrograph": name, "status": "failed", "n_candidates": 0, "seconds": seconds, "apix": float("nan"),
            **worker_info(), "error": error}


def pick_file(
    path: str | Path,
    outdir: str | Path,
    model,
    config: dict,
    params: PickParams,
    apix: float | None = None,
    device: str = "cpu",
    name: str | None = None,
    classifier=None,
    model_stamp: float = 0.0,
    classifier_stamp: float = 0.0,
) -> dict:
    """Pick one micrograph file and store its candidates atomically.

    Every pick scoring above ``params.threshold`` is stored; ``params.max_picks``
    is applied later, at gather time. Skips the work when the part file
    already exists and was written with a floor no higher than
    ``params.threshold`` by the same model (``model_stamp``: :func:`weights_stamp`
    of its folder, recorded in the part), classifier (``classifier_stamp``, the
    same of its folder, 0 for none; taken as 1 when a classifier is given
    without it) and settings (resume).

    Returns
    -------
    dict
        Summary row (:data:`SUMMARY_COLUMNS`): ``status`` is ``done``,
        ``skipped`` or ``failed`` (then ``error`` holds the one-line reason).
    """
    name = name or str(path)
    part = part_path(outdir, name)
    classifier_stamp = classifier_stamp or (1.0 if classifier is not None else 0.0)
    if part.exists():
        meta = read_part_header(part)
        if _reusable(meta, params, classifier_stamp, model_stamp):
            n = len(read_part(part))
            return {"micrograph": name, "status": "skipped", "n_candidates": n, "seconds": 0.0,
                    "apix": meta["apix"], **worker_info(), "error": ""}
    t0 = time.perf_counter()
    try:
        mic = read_micrograph(path, apix=apix)
        require_apix(mic, path, params.diameter_A)
        picks, _, _ = pick_image(mic.data, mic.apix, model, config, replace(params, max_picks=None), device=device,
                                 classifier=classifier)
    except PixerError as exc:
        return failed_row(name, str(exc), time.perf_counter() - t0)
    except (OSError, ValueError, RuntimeError) as exc:  # unreadable in a way io did not foresee, torch errors
        return failed_row(name, f"{path}: {type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}",
                          time.perf_counter() - t0)
    picks.insert(0, "micrograph", name)
    picks = picks.round({"x": 2, "y": 2, "score": 5})
    with atomic_path(part) as tmp, open(tmp, "w") as fh:
        area = picked_area(mic.data.shape[-2:], mic.apix, params.diameter_A, params.edge_margin_A)
        classified, cmin, cjunk = _classifier_key(params, classifier_stamp)
        fh.write(f"# apix={mic.apix!r} floor={params.threshold!r} classified={classified!r} cmin={cmin!r} "
                 f"cjunk={cjunk!r} "
                 f"edge={float(params.edge_margin_A)!r} mind={float(params.min_distance_A or 0.0)!r} "
                 f"diam={float(params.diameter_A)!r} area={area!r} inv={int(params.invert)} "
                 f"model={float(model_stamp)!r}\n")
        picks[PART_COLUMNS].to_csv(fh, index=False)
    return {"micrograph": name, "status": "done", "n_candidates": len(picks), "seconds": time.perf_counter() - t0,
            "apix": mic.apix, **worker_info(), "error": ""}


@functools.lru_cache(maxsize=4)
def _load(kind: str, model_dir: str, device: str, stamp: float):
    if kind == "classifier":
        from pixer.models.classifier import load_classifier

        return load_classifier(model_dir, device=device)
    from pixer.models.store import load_model

    return load_model(model_dir, device=device)


def _cached(kind: str, model_dir: str | Path, device: str, config_name: str):
    model_dir = Path(model_dir).resolve()
    cfg = model_dir / config_name
    stamp = cfg.stat().st_mtime if cfg.exists() else 0.0
    return _load(kind, str(model_dir), str(device), stamp)


def cached_model(model_dir: str | Path, device: str = "cpu"):
    """:func:`~pixer.models.store.load_model`, once per process and (folder, device).

    The key includes ``config.json``'s modification time, so a rewritten model
    folder is reloaded.
    """
    return _cached("segmentation", model_dir, device, "config.json")


def cached_classifier(classifier_dir: str | Path, device: str = "cpu"):
    """:func:`~pixer.models.classifier.load_classifier`, once per process and (folder, device)."""
    return _cached("classifier", classifier_dir, device, "classifier.json")


@dataclass(frozen=True)
class PickTask:
    """``pick_file`` as a small picklable callable ``path -> summary row``.

    Shipped to workers instead of the model: each worker process loads the
    model once (:func:`cached_model`) and reuses it for every micrograph.

    Attributes
    ----------
    model_dir
        Model folder (``pixer train`` output), readable from the workers.
    outdir
        Output folder of the run; parts go to ``outdir/parts``.
    params
        Picking parameters; ``params.threshold`` is the candidate floor.
    apix
        Micrograph pixel size override (Å/px) or None for the header's.
    device
        Torch device on the worker.
    classifier_dir
        Optional crop-classifier folder (``pixer train-classifier`` output)
        that removes interference and noise candidates.
    model_stamp, classifier_stamp
        :func:`weights_stamp` of ``model_dir`` and ``classifier_dir`` (parts another model or
        classifier made are recomputed).
    """

    model_dir: str
    outdir: str
    params: PickParams
    apix: float | None = None
    device: str = "cpu"
    classifier_dir: str | None = None
    model_stamp: float = 0.0
    classifier_stamp: float = 0.0

    def __call__(self, path: str) -> dict:
        part = part_path(self.outdir, str(path))
        stamp = (self.classifier_stamp or 1.0) if self.classifier_dir else 0.0
        if part.exists() and _reusable(read_part_header(part), self.params, stamp, self.model_stamp):
            model, config, classifier = None, {}, None  # resume: no need to load the models
        else:
            model, config = cached_model(self.model_dir, self.device)
            classifier = cached_classifier(self.classifier_dir, self.device) if self.classifier_dir else None
        return pick_file(path, self.outdir, model, config, self.params, apix=self.apix, device=self.device,
                         name=str(path), classifier=classifier, model_stamp=self.model_stamp,
                         classifier_stamp=stamp)


def gather_parts(outdir: str | Path, names: Sequence[str]) -> pd.DataFrame:
    """Concatenate the part files of ``names`` (those that exist) into one table."""
    frames = [read_part(p) for n in names if (p := part_path(outdir, n)).exists()]
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
    write_micrographs_star([Path(n) for n in names], mic_star, apix=apix, names="as-given")
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
