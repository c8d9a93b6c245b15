"""``pixer report``: one self-contained HTML page about a ``pixer pick`` run.

The page shows, in order: headline numbers; picks drawn on a sample of
micrographs (low-pass filtered; with truth, true positives green, false
positives red, missed particles yellow); the histogram of candidate scores
with the run's threshold (every candidate stored in ``parts/``, so what the
threshold cut is visible); picks per micrograph (plot and table); with truth,
the precision-recall curve and P/R/F1/AUPRC (:func:`pixer.evaluate.evaluate`,
matching within ``radius_fraction x diameter``); failed micrographs with
their reasons; the run's configuration and the model's.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from pixer.errors import PixerError
from pixer.evaluate.masks import is_mask_source, read_mask_truth
from pixer.evaluate.matching import match_tables, mic_key
from pixer.evaluate.metrics import evaluate
from pixer.io.coords import read_picks
from pixer.io.micrographs import read_micrograph
from pixer.io.paths import write_text_atomic
from pixer.report import html
from pixer.report.figures import (
    micrograph_png,
    picks_per_micrograph_png,
    pr_curve_png,
    score_histogram_png,
)
from pixer.evaluate.matching import check_truth_names
from pixer.report.run import PickRun, find_micrographs, load_run

__all__ = ["build_report"]

#: Run-record facts shown in the configuration section, in this order.
RECORD_KEYS = ("pixer_version", "finished", "host", "device", "apix", "threshold", "threshold_rule",
               "candidate_floor", "n_micrographs", "n_failed", "n_skipped", "n_picks", "seconds")  # fmt: skip
#: Model-config facts shown, in this order (``metrics`` are listed separately).
MODEL_KEYS = ("particle_px", "apix", "diameter_A", "tile", "stride", "norm_k", "arch", "seed", "pixer_version")
METRIC_KEYS = ("val_iou", "best_val_iou", "val_loss", "train_loss", "steps", "best_step", "n_params", "n_train",
               "n_val", "seconds", "world_size")  # fmt: skip
PER_MIC_COLUMNS = ("micrograph", "status", "n_picks", "n_candidates", "threshold", "seconds", "apix")
#: Unreadable micrographs warned about one line each; more are summarised in one line.
MAX_WARNINGS = 5


def _scored(df: pd.DataFrame) -> pd.DataFrame:
    return df if "score" in df and df["score"].notna().all() else df.assign(score=1.0)


def _read_truth(truth, files: dict[str, Path]) -> pd.DataFrame:
    """True particles: coordinates, or the centres of disc masks named like the micrographs."""
    if isinstance(truth, (list, tuple)) and len(truth) == 1:
        truth = truth[0]
    if isinstance(truth, (str, os.PathLike)) and is_mask_source(truth):
        if not files:
            raise PixerError(f"{truth}: masks need the micrograph files (their shapes): pass --micrographs")
        return read_mask_truth(truth, list(files.values()))
    return read_picks(truth)


def _spec_name(spec) -> str:
    """A file / folder / glob argument (one or several) as one string for messages."""
    return " ".join(map(str, spec)) if isinstance(spec, (list, tuple)) else str(spec)


def _rows_of(table: pd.DataFrame, name: str) -> pd.DataFrame:
    """Rows of ``table`` for micrograph ``name`` (exact name, else the same key)."""
    names = table["micrograph"].astype(str)
    exact = table[names == name]
    return exact if len(exact) else table[names.map(mic_key) == mic_key(name)]


def _sample(names: list[str], n: int) -> list[str]:
    """``n`` names spread evenly over the list (first and last included)."""
    if n <= 0 or not names:
        return []
    idx = np.unique(np.linspace(0, len(names) - 1, min(n, len(names))).round().astype(int))
    return [names[i] for i in idx]


def _unreadable_warnings(errors: list[str]) -> list[str]:
    """One warning per unreadable micrograph, or one line for them all when there are many."""
    if len(errors) <= MAX_WARNINGS:
        return [f"micrograph not drawn: {e}" for e in errors]
    return [f"{len(errors)} micrographs not drawn (unreadable), first: {errors[0]}"]


def _micrograph_section(run: PickRun, files: dict[str, Path], truth: pd.DataFrame | None, diameter_A: float,
                        apix: float | None, radius_fraction: float, sample: int,
                        warnings: list[str]) -> str:  # fmt: skip
    legend = ('<p class="legend"><span style="color:#0a0">&#9711; true positive</span>'
              '<span style="color:#d00">&#9711; false positive</span>'
              '<span style="color:#b90">&#9711; missed particle</span></p>') if truth is not None else \
        '<p class="legend"><span style="color:#0aa">&#9711; pick</span></p>'  # fmt: skip
    names = [n for n in run.done() if n in files]
    if not names:
        return '<p class="note warn">No micrograph file found for this run: pass --micrographs.</p>'
    per_apix = run.summary.set_index("micrograph")["apix"] if "apix" in run.summary else pd.Series(dtype=float)
    figs, errors = [], []
    for name in _sample(names, sample):
        mic_apix = float(per_apix.get(name, np.nan)) if len(per_apix) else np.nan
        mic_apix = mic_apix if np.isfinite(mic_apix) else apix
        try:
            mic = read_micrograph(files[name], apix=mic_apix)
        except PixerError as exc:
            figs.append(f'<p class="note warn">{html.esc(exc)}</p>')
            errors.append(str(exc))
            continue
        d_px = diameter_A / (mic.apix or 1.0)
        picks = _rows_of(run.picks, name)[["x", "y"]].to_numpy(float)
        true_xy = _rows_of(truth, name)[["x", "y"]].to_numpy(float) if truth is not None else None
        png = micrograph_png(mic.data, picks, true_xy, d_px, radius_fraction * d_px, title=Path(name).name)
        figs.append(html.image(png, alt=f"picks on {name}", caption=name))
    warnings.extend(_unreadable_warnings(errors))
    shown = f"{min(sample, len(names))} of {len(names)} micrographs, low-pass filtered for display"
    return f'{legend}<p class="note">{html.esc(shown)}</p><div class="grid">{"".join(figs)}</div>'


def _score_section(run: PickRun, truth: pd.DataFrame | None, radius_px: float | None) -> str:
    cands = run.candidates if run.candidates is not None else run.picks
    if "score" not in cands or cands["score"].isna().all() or cands.empty:
        return '<p class="note">No scores in this run.</p>'
    matched = None
    if truth is not None and radius_px:
        matched = match_tables(cands, truth, radius_px)[0]["tp"].to_numpy()
    floor = run.record.get("candidate_floor")
    png = score_histogram_png(cands["score"].to_numpy(float), run.threshold, matched, floor)
    source = "every candidate stored in parts/" if run.candidates is not None else "the picks (no parts/ folder)"
    kept = int((cands["score"] > run.threshold).sum()) if run.threshold is not None else len(cands)
    text = (f"{len(cands)} scores ({source}); threshold {html.fmt(run.threshold)} "
            f"({run.record.get('threshold_rule', 'rule not recorded')}) keeps {kept}.")
    return f'<p class="note">{html.esc(text)}</p>' + html.image(png, alt="score histogram")


def _per_micrograph_section(run: PickRun, per_mic: pd.DataFrame | None) -> str:
    table = run.summary[[c for c in PER_MIC_COLUMNS if c in run.summary]].copy()
    if "n_picks" not in table:
        table["n_picks"] = table["micrograph"].map(run.picks["micrograph"].value_counts()).fillna(0).astype(int)
    if per_mic is not None:
        keyed = per_mic.assign(key=per_mic["micrograph"].map(mic_key)).drop_duplicates("key").set_index("key")
        keys = table["micrograph"].map(mic_key)
        for col in ("n_true", "tp", "precision", "recall", "f1"):
            table[col] = keys.map(keyed[col])
    ok = table[table["status"].astype(str) != "failed"] if "status" in table else table
    png = picks_per_micrograph_png(ok["n_picks"])
    return html.image(png, alt="picks per micrograph") + html.table(table.reset_index(drop=True), number_index=True)


def _accuracy(run: PickRun, truth: pd.DataFrame, diameter_px: float, radius_fraction: float) -> tuple[dict, str]:
    """Metrics at the run's threshold (the picks as exported) and over every candidate (curve)."""
    at = evaluate(_scored(run.picks), truth, diameter_px=diameter_px, radius_fraction=radius_fraction)
    cands = run.candidates if run.candidates is not None else run.picks
    curve = evaluate(_scored(cands), truth, diameter_px=diameter_px, radius_fraction=radius_fraction)
    facts = {"precision": at["precision"], "recall": at["recall"], "F1": at["f1"], "picks": at["n_picks"],
             "true particles": at["n_true"], "true positives": at["tp"], "best F1": curve["best_f1"],
             "best threshold": curve["best_threshold"], "AUPRC": curve["auprc"],
             "match radius (px)": curve["radius_px"]}  # fmt: skip
    png = pr_curve_png(curve["precision_curve"], curve["recall_curve"], curve["auprc"])
    note = ("P/R/F1 of the picks at the run's threshold; the curve, best F1 and AUPRC sweep every stored "
            "candidate's score (one-to-one Hungarian matching).")
    body = f'<p class="note">{html.esc(note)}</p>{html.kv_table(facts)}' + html.image(png, alt="precision-recall")
    return {**facts, "per_micrograph": at["per_micrograph"]}, body


def _config_section(run: PickRun) -> str:
    facts = {k: run.record[k] for k in RECORD_KEYS if k in run.record}
    if run.record.get("diameter_used_A") is not None:
        facts["diameter used (Å)"] = run.record["diameter_used_A"]
    contrast = run.record.get("contrast")
    if isinstance(contrast, dict) and contrast.get("polarity"):
        facts["particle contrast"] = (f"{contrast['polarity']}" + (", micrographs inverted" if contrast.get("invert")
                                      else "") + (f" ({contrast['rule']})" if contrast.get("rule") else ""))
    parts = [f"<h3>Run</h3>{html.kv_table(facts)}" if facts else '<p class="note">No pixer_pick.json.</p>']
    if run.arguments:
        parts.append(f"<h3>pixer pick arguments</h3>{html.kv_table(run.arguments)}")
    cfg = run.model_config
    if cfg:
        parts.append(f"<h3>Model</h3>{html.kv_table({k: cfg[k] for k in MODEL_KEYS if k in cfg})}")
        metrics = cfg.get("metrics") or {}
        if metrics:
            shown = {k: metrics[k] for k in METRIC_KEYS if k in metrics}
            parts.append(f"<h3>Training metrics</h3>{html.kv_table(shown)}")
    return "".join(parts)


def build_report(
    picks: str | os.PathLike,
    out: str | os.PathLike,
    *,
    truth=None,
    diameter_A: float | None = None,
    micrographs=None,
    apix: float | None = None,
    sample: int = 6,
    radius_fraction: float = 0.5,
) -> dict:
    """Write the HTML report of a ``pixer pick`` run (atomically).

    Parameters
    ----------
    picks
        The run's output folder.
    out
        HTML file to write.
    truth
        Optional true coordinates (any format :func:`pixer.io.read_picks`
        reads) or a folder/glob of disc masks named like the micrographs.
    diameter_A
        Particle diameter in Å (default: the run's ``--diameter``).
    micrographs
        Where the micrographs are (folder, glob, files, STAR); default the
        run's ``micrographs.star``, then its micrograph names.
    apix
        Micrograph pixel size in Å/px (default: the run's).
    sample
        Micrographs drawn.
    radius_fraction
        Matching radius as a fraction of the diameter.

    Returns
    -------
    dict
        Headline numbers shown on the page (and the metrics with truth), and
        ``warnings``: one-line problems the page shows but that did not stop it
        (unreadable micrographs, micrographs the truth does not cover).

    Raises
    ------
    PixerError
        The run folder is unreadable, the diameter or (with truth) the pixel size
        is unknown, the truth is unreadable or names none of the run's micrographs.
    """
    run = load_run(picks)
    diameter_A = diameter_A or run.diameter_A
    if diameter_A is None:
        raise PixerError(f"{picks}: particle diameter not recorded by the run: pass --diameter")
    apix = apix or run.apix
    files = find_micrographs(run, micrographs)
    done = run.done()
    warnings: list[str] = []
    if micrographs and done and not files:
        warnings.append(f"{_spec_name(micrographs)}: none of the {len(done)} micrographs picked in {picks} is there")
    counts = run.picks["micrograph"].value_counts()
    headline: dict[str, object] = {
        "micrographs picked": len(done), "failed": len(run.failed), "picks": len(run.picks),
        "median picks / micrograph": float(np.median([counts.get(n, 0) for n in done])) if done else 0,
        "threshold": run.threshold,
    }  # fmt: skip
    truth_df, accuracy, per_mic = None, None, None
    sections = []
    if truth is not None:
        if apix is None:
            raise PixerError(f"{picks}: micrograph pixel size unknown: pass --apix")
        truth_df = _read_truth(truth, files)
        partial = check_truth_names(done, truth_df, f"micrographs picked in {picks}", _spec_name(truth))
        if partial:
            warnings.append(partial)
        accuracy, acc_body = _accuracy(run, truth_df, diameter_A / apix, radius_fraction)
        per_mic = accuracy.pop("per_micrograph")
        headline.update({k: accuracy[k] for k in ("precision", "recall", "F1", "AUPRC")})
    radius_px = radius_fraction * diameter_A / apix if apix else None
    sections.append(html.section("micrographs", "Picks on micrographs", _micrograph_section(
        run, files, truth_df, diameter_A, apix, radius_fraction, sample, warnings)))
    sections.append(html.section("scores", "Scores and threshold", _score_section(run, truth_df, radius_px)))
    sections.append(html.section("per-micrograph", "Picks per micrograph", _per_micrograph_section(run, per_mic)))
    if accuracy is not None:
        sections.append(html.section("accuracy", "Accuracy against the truth", acc_body))
    failed = html.table(run.failed) if len(run.failed) else '<p class="note">No micrograph failed.</p>'
    sections.append(html.section("failed", f"Failed micrographs ({len(run.failed)})", failed))
    sections.append(html.section("configuration", "Configuration", _config_section(run)))
    subtitle = f"{Path(picks).resolve()} · diameter {diameter_A:g} Å" + (f" · {apix:g} Å/px" if apix else "")
    if truth is not None:
        subtitle += f" · truth {_spec_name(truth)}"
    text = html.page("pixer pick report", subtitle, html.cards(headline), sections)
    write_text_atomic(out, text)
    return {**headline, **({"accuracy": accuracy} if accuracy else {}), "warnings": warnings}
