"""Label folders: what ``pixer labels`` writes and ``pixer train --labels`` reads.

Layout of ``out/``::

    <micrograph name>_label.mrc      label per micrograph (int8 0/1, label pixel size in the header);
                                     sub-folders of the name are kept (pixer.io.paths.output_path)
    <micrograph name>_instance.mrc   optional: owner of each pixel (uint16, 0 = none, i = i-th row
                                     of that micrograph in labels.star)
    label_index.star                 one row per micrograph: rlnMicrographName, pixerLabelFile,
                                     pixerInstanceFile, pixerHeight/Width (label px),
                                     pixerMicrographHeight/Width, pixerMicrographPixelSize,
                                     pixerLabelPixelSize (Å/px), pixerPasted, pixerSkipped
    labels.star                      one row per particle: rlnMicrographName, rlnCoordinateX/Y (input),
                                     pixerCentreX/Y (true centre, micrograph px), pixerStatus
                                     (pasted/skipped), pixerReason (words joined by _, e.g.
                                     unknown_micrograph, centre_off_micrograph, angles_missing),
                                     pixerInstance, pixerAreaPx (label px pasted)
    labels.json                      how the labels were made (mode, threshold rule, map, pixel sizes,
                                     diameter, counts)
    done/<micrograph name>.json      per micrograph, written after its label: its index row and
                                     particle records (what a rerun needs to skip it)
    labels_settings.json             the settings of the run that wrote done/

Every file is written atomically and the index last, so a folder without
``label_index.star`` is incomplete and is not read. A rerun with the same settings
(:func:`completed_micrographs`) skips the micrographs already in ``done/``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np
import pandas as pd
import starfile
from tqdm import tqdm

import pixer
from pixer.data.preprocess import crop_shape
from pixer.errors import PixerError, file_error
from pixer.io.mrc_write import write_mrc
from pixer.io.paths import atomic_path, output_path, write_text_atomic
from pixer.io.star import read_star_blocks
from pixer.labels.discs import DEFAULT_FRACTION, disc_labels
from pixer.labels.inputs import check_diameter
from pixer.labels.reconstruction import (
    PASTED,
    SKIPPED,
    LabelResult,
    micrograph_apix,
    particle_records,
)

INDEX = "label_index.star"
SUMMARY = "labels.star"
INFO = "labels.json"
DONE = "done"
SETTINGS = "labels_settings.json"
RECORD_COLUMNS = ["micrograph", "x", "y", "x_true", "y_true", "status", "reason", "instance", "area_px"]


def _settings_text(settings: Mapping) -> str:
    return json.dumps(dict(settings), indent=2, sort_keys=True, default=str) + "\n"


def completed_micrographs(out: str | os.PathLike, settings: Mapping) -> dict[str, dict]:
    """Micrographs a previous run with the same ``settings`` finished in ``out``.

    Parameters
    ----------
    out
        Label folder.
    settings
        JSON-able facts that decide the labels (inputs, map, threshold, pixel sizes, ...).

    Returns
    -------
    dict
        Micrograph name -> ``{"index": index row, "records": records dict}`` (see
        ``done/``); empty when the folder was made with other settings or not at all.
        Entries whose label file is missing are left out (they are redone).
    """
    out = Path(out)
    path = out / SETTINGS
    if not path.is_file() or path.read_text() != _settings_text(settings) or not (out / DONE).is_dir():
        return {}
    done = {}
    for f in (out / DONE).rglob("*.json"):
        try:
            entry = json.loads(f.read_text())
        except (OSError, ValueError):
            continue  # unreadable: redo that micrograph
        if (out / entry["index"]["pixerLabelFile"]).is_file():
            done[entry["index"]["rlnMicrographName"]] = entry
    return done


def _write_star(path: Path, blocks: dict[str, pd.DataFrame]) -> None:
    with atomic_path(path) as tmp:
        starfile.write(blocks, tmp, na_rep="nan")


def _plain(value):
    """numpy scalars → Python numbers for json."""
    return value.item() if hasattr(value, "item") else str(value)


def _instance_array(inst: np.ndarray) -> np.ndarray:
    return inst.astype(np.uint16) if inst.max(initial=0) < 2**16 else inst.astype(np.float32)


def write_label_folder(
    out: str | os.PathLike,
    results: Iterable[LabelResult],
    skipped: pd.DataFrame | None = None,
    info: Mapping | None = None,
    progress: bool = False,
    settings: Mapping | None = None,
    done: Mapping[str, dict] | None = None,
    order: list[str] | None = None,
) -> dict:
    """Write labels, instance images, ``label_index.star``, ``labels.star`` and ``labels.json``.

    Parameters
    ----------
    out
        Output folder (created).
    results
        :class:`~pixer.labels.reconstruction.LabelResult` per micrograph (e.g. from
        :func:`~pixer.labels.reconstruction.synthesize_labels` or :func:`disc_label_results`).
    skipped
        Extra per-particle records (e.g. ``unknown micrograph``), same columns as
        ``LabelResult.records``.
    info
        Facts recorded in ``labels.json`` (threshold rule, map, diameter, ...).
    settings
        What decides the labels; with it, each micrograph's index row and records
        go to ``done/`` as soon as its label is written, so that a rerun can skip it.
    done
        Micrographs finished by an earlier run (:func:`completed_micrographs`):
        not rewritten, but part of the index and summary.
    order
        Micrograph names in index order (default: done ones, then ``results``' order).

    Returns
    -------
    dict
        The content of ``labels.json``.
    """
    out = Path(out)
    (out / INDEX).unlink(missing_ok=True)  # an older index must not describe a half-rewritten folder
    done = dict(done or {})
    if settings is not None:
        write_text_atomic(out / SETTINGS, _settings_text(settings))
    index = [e["index"] for e in done.values()]
    records = [pd.DataFrame(e["records"], columns=RECORD_COLUMNS) for e in done.values()]
    for res in tqdm(results, desc="write labels", unit="mic", disable=not progress):
        label_path = output_path(out, res.name, "_label.mrc")
        write_mrc(label_path, res.label.astype(np.int8), res.label_apix)
        inst_name = "none"
        if res.instance is not None:
            inst_path = output_path(out, res.name, "_instance.mrc")
            write_mrc(inst_path, _instance_array(res.instance), res.label_apix)
            inst_name = inst_path.relative_to(out.resolve()).as_posix()
        status = res.records["status"].to_numpy()
        index.append({
            "rlnMicrographName": res.name, "pixerLabelFile": label_path.relative_to(out.resolve()).as_posix(),
            "pixerInstanceFile": inst_name, "pixerHeight": res.label.shape[0], "pixerWidth": res.label.shape[1],
            "pixerMicrographHeight": res.shape[0], "pixerMicrographWidth": res.shape[1],
            "pixerMicrographPixelSize": res.apix, "pixerLabelPixelSize": res.label_apix,
            "pixerPasted": int((status == PASTED).sum()), "pixerSkipped": int((status == SKIPPED).sum()),
        })
        records.append(res.records)
        if settings is not None:
            entry = {"index": index[-1], "records": res.records[RECORD_COLUMNS].to_dict("list")}
            write_text_atomic(output_path(out / DONE, res.name, ".json"), json.dumps(entry, default=_plain) + "\n")
    if order is not None:
        rank = {name: i for i, name in enumerate(order)}
        key = [rank.get(row["rlnMicrographName"], len(rank)) for row in index]
        perm = sorted(range(len(index)), key=key.__getitem__)
        index, records = [index[i] for i in perm], [records[i] for i in perm]
    if skipped is not None and len(skipped):
        records.append(skipped)
    table = pd.concat(records, ignore_index=True) if records else pd.DataFrame(columns=RECORD_COLUMNS)
    summary = pd.DataFrame({
        "rlnMicrographName": table["micrograph"].astype(str), "rlnCoordinateX": table["x"].astype(float),
        "rlnCoordinateY": table["y"].astype(float), "pixerCentreX": table["x_true"].astype(float),
        "pixerCentreY": table["y_true"].astype(float), "pixerStatus": table["status"].astype(str),
        "pixerReason": table["reason"].astype(str).str.replace(" ", "_"),
        "pixerInstance": table["instance"].astype(int), "pixerAreaPx": table["area_px"].astype(int),
    })
    _write_star(out / SUMMARY, {"particles": summary})
    reasons = table.loc[table["status"] == SKIPPED, "reason"].value_counts().to_dict()
    record = {
        "pixer_version": pixer.__version__, **dict(info or {}),
        "n_micrographs": len(index), "n_particles": len(table),
        "n_pasted": int((table["status"] == PASTED).sum()), "n_skipped": int((table["status"] == SKIPPED).sum()),
        "skipped_reasons": {str(k): int(v) for k, v in reasons.items()},
        "files": {"index": INDEX, "summary": SUMMARY},
    }
    write_text_atomic(out / INFO, json.dumps(record, indent=2, default=str) + "\n")
    _write_star(out / INDEX, {"labels": pd.DataFrame(index, columns=[
        "rlnMicrographName", "pixerLabelFile", "pixerInstanceFile", "pixerHeight", "pixerWidth",
        "pixerMicrographHeight", "pixerMicrographWidth", "pixerMicrographPixelSize", "pixerLabelPixelSize",
        "pixerPasted", "pixerSkipped"])})
    return record


def read_label_index(folder: str | os.PathLike) -> tuple[pd.DataFrame, dict]:
    """Read a label folder's index and ``labels.json``.

    Returns
    -------
    index
        One row per micrograph: ``micrograph`` (name), ``label_path`` (Path),
        ``mic_height``, ``mic_width`` (micrograph px), ``apix`` (micrograph Å/px),
        ``label_apix`` (Å/px).
    info
        ``labels.json`` (empty dict when absent).
    """
    folder = Path(folder)
    path = folder / INDEX
    if not folder.is_dir():
        raise file_error(folder, "no such label folder")
    if not path.is_file():
        raise file_error(folder, f"not a label folder (no {INDEX}; was pixer labels interrupted?)")
    blocks = read_star_blocks(path)
    table = blocks.get("labels")
    need = {"rlnMicrographName", "pixerLabelFile", "pixerMicrographPixelSize", "pixerLabelPixelSize",
            "pixerMicrographHeight", "pixerMicrographWidth"}
    if not isinstance(table, pd.DataFrame) or not need <= set(table.columns):
        raise file_error(path, f"not a label index (needs data_labels with {', '.join(sorted(need))})")
    try:
        info = json.loads((folder / INFO).read_text()) if (folder / INFO).is_file() else {}
    except ValueError as exc:
        raise file_error(folder / INFO, f"not valid JSON ({exc})") from None
    index = pd.DataFrame({
        "micrograph": table["rlnMicrographName"].astype(str).to_numpy(),
        "label_path": [folder / str(p) for p in table["pixerLabelFile"]],
        "mic_height": table["pixerMicrographHeight"].astype(int).to_numpy(),
        "mic_width": table["pixerMicrographWidth"].astype(int).to_numpy(),
        "apix": table["pixerMicrographPixelSize"].astype(float).to_numpy(),
        "label_apix": table["pixerLabelPixelSize"].astype(float).to_numpy(),
    })
    return index, info


def disc_label_results(
    picks: pd.DataFrame,
    shapes: Mapping[str, tuple[int, int]],
    diameter_A: float,
    apix: float | Mapping[str, float] | None = None,
    out_apix: float | None = None,
    fraction: float = DEFAULT_FRACTION,
):
    """Coordinate-only fallback: disc labels (no map, no angles) as :class:`LabelResult`.

    Discs of radius ``fraction × diameter_A / 2`` at the true centres (origins
    applied when present), on the grid of :func:`synthesize_labels`. A diameter larger
    than a micrograph raises :class:`~pixer.errors.PixerError` (when that micrograph's turn comes).
    """
    groups = dict(iter(picks.groupby(picks["micrograph"].astype(str).to_numpy(), sort=False)))
    for name, (h, w) in shapes.items():
        rows = groups.get(name, picks.iloc[:0])
        mic_apix = micrograph_apix(name, rows, apix)
        check_diameter(diameter_A, {name: (h, w)}, mic_apix)
        rec = particle_records(name, rows, mic_apix, (int(h), int(w)), need_angles=False)
        hl, wl = crop_shape((int(h), int(w)), mic_apix, out_apix) if out_apix else (int(h), int(w))
        label_apix = 0.5 * mic_apix * (h / hl + w / wl)
        ok = rec["status"].to_numpy() == PASTED
        xy = np.stack([rec["x_true"].to_numpy() * wl / w, rec["y_true"].to_numpy() * hl / h], 1)[ok]
        label = disc_labels((hl, wl), xy, fraction * 0.5 * diameter_A / label_apix)
        rec["instance"] = 0
        yield LabelResult(name, label, None, rec, mic_apix, label_apix, (int(h), int(w)))


def check_shapes(shapes: Mapping[str, tuple[int, int]], source: str) -> None:
    """Every shape is two positive integers."""
    for name, shape in shapes.items():
        if len(shape) != 2 or min(int(s) for s in shape) < 1:
            raise PixerError(f"{source}: micrograph {name} has an invalid shape {tuple(shape)}")


__all__ = ["INDEX", "INFO", "SUMMARY", "check_shapes", "disc_label_results", "read_label_index",
           "write_label_folder"]
