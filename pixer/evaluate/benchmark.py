"""Benchmark pixer (and peers) on several data sets listed in a samplesheet.

A samplesheet is a CSV, one data set per row:

=============  ==========================================================================
column         meaning
=============  ==========================================================================
dataset        id, e.g. ``EMPIAR-10028`` (unique; names the output folder)
micrographs    folder, glob, file or RELION micrographs STAR
apix           micrograph pixel size in Å/px; empty when the files carry it (MRC)
diameter       particle diameter in Å
truth          optional: coordinates (file, folder, glob) or a folder of disc masks
model          optional: pixer model folder for this row (default: ``--model``)
peers          optional: other pickers for this row, e.g. ``relion,topaz,lattice``
=============  ==========================================================================

Relative paths resolve against the samplesheet's folder. Every row is checked
before any work starts; a bad row is one :class:`~pixer.errors.PixerError`
naming the samplesheet, the row and the problem (a row with more fields than
the header; an empty apix where a micrograph's header carries no pixel size).
A truth that names none of a data set's micrographs fails that data set; one
that covers only some is a ``warning:`` line on stderr.

Per data set, ``pixer pick`` runs once (in this process) into
``<out>/<dataset>/pixer``; its picks are scored at the run's own threshold
(precision, recall, F1 "at default") and every stored candidate is scored for
the curve (best F1, AUPRC), both with :func:`pixer.evaluate.evaluate`. Peers
run through ``bench/compare_peers.py`` when it offers ``pick_<peer>`` (see
``docs/benchmark.md``) and the peer is installed; otherwise the table says
"not available". ``lattice`` is built in: the chance level, an image-blind hexagonal
lattice of picks (:mod:`pixer.evaluate.baseline`); its F1 is at one diameter's
spacing, its best F1 the best over spacings 0.6-1.2 diameters (no AUPRC: it has no
ranking). The table is written as CSV, markdown and a bar plot.
"""

from __future__ import annotations

import csv
import importlib.util
import math
import re
import sys
import time
import warnings
from dataclasses import dataclass, replace
from pathlib import Path

import mrcfile
import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from pixer.errors import PixerError, file_error
from pixer.evaluate.baseline import chance_level, lattice_picks, micrograph_shapes
from pixer.evaluate.masks import is_mask_source, read_mask_truth
from pixer.evaluate.metrics import evaluate
from pixer.io.coords import read_picks
from pixer.io.micrographs import (
    MRC_SUFFIXES,
    RASTER_SUFFIXES,
    TIFF_SUFFIXES,
    header_apix,
    list_micrographs,
    read_micrograph,
)
from pixer.io.paths import atomic_path, safe_relpath, write_text_atomic
from pixer.models.general import GENERAL, resolve_model
from pixer.evaluate.matching import check_truth_names
from pixer.report.run import load_run

__all__ = ["TABLE_COLUMNS", "Dataset", "parse_peers", "read_samplesheet", "run_benchmark", "write_table"]

REQUIRED = ("dataset", "micrographs", "diameter")
OPTIONAL = ("apix", "truth", "model", "peers")
KNOWN_PEERS = ("relion", "topaz", "lattice")
#: Columns of the comparison table, in order.
TABLE_COLUMNS = ["dataset", "picker", "status", "n_micrographs", "n_true", "n_picks", "threshold", "precision",
                 "recall", "f1", "best_f1", "best_threshold", "auprc", "seconds"]  # fmt: skip
#: What the bar plot shows: column -> panel title.
PLOTTED = {"best_f1": "best F1", "auprc": "AUPRC", "f1": "F1 at the default threshold"}
PEERS_SCRIPT = Path(__file__).resolve().parents[2] / "bench" / "compare_peers.py"
#: What to do instead of ``pixer pick``'s "pass --apix" (benchmark has no --apix).
APIX_HINT = "fill the samplesheet's apix column"


@dataclass(frozen=True)
class Dataset:
    """One checked samplesheet row (paths resolved; lengths in Å)."""

    name: str
    row: int
    micrographs: str
    n_micrographs: int
    apix: float | None
    diameter_A: float
    truth: str | None
    model: str
    peers: tuple[str, ...]


def _resolve(text: str, base: Path) -> str:
    """A samplesheet path (glob allowed) made absolute against the samplesheet's folder."""
    return text if Path(text).is_absolute() else str(base / text)


def _number(text: str, what: str) -> float | None:
    if text == "":
        return None
    try:
        value = float(text)
    except ValueError:
        raise PixerError(f"{what} must be a number, got {text!r}") from None
    if not (math.isfinite(value) and value > 0):
        raise PixerError(f"{what} must be > 0, got {text}")
    return value


def _mrc_without_apix(files: list[Path]) -> list[Path]:
    """MRC files whose header carries no pixel size (as :func:`~pixer.io.micrographs.read_micrograph`
    reads it); files whose header cannot be read are left to ``pixer pick`` to report."""
    out = []
    for f in files:
        if f.suffix.lower() not in MRC_SUFFIXES:
            continue
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                with mrcfile.open(f, header_only=True, permissive=True) as mrc:
                    apix = header_apix(mrc)
        except Exception:  # noqa: BLE001, S112 - unreadable: pixer pick says why, per micrograph
            continue
        if apix is None:
            out.append(f)
    return out


def parse_peers(text: str) -> tuple[str, ...]:
    """Peer names from ``"relion,topaz"`` (commas, semicolons, bars or spaces); unknown names are an error."""
    names = tuple(p.lower() for p in re.split(r"[,;|\s]+", text) if p)
    unknown = [p for p in names if p not in KNOWN_PEERS]
    if unknown:
        raise PixerError(f"unknown peer(s) {', '.join(unknown)} (known: {', '.join(KNOWN_PEERS)})")
    return names


def _check_row(row: dict, base: Path, model: str | None, peers: tuple[str, ...]) -> Dataset:
    """One row → :class:`Dataset`; a PixerError says what is wrong (the caller names the row)."""
    mics = _resolve(row["micrographs"], base) if row["micrographs"] else ""
    if not mics:
        raise PixerError("micrographs is empty")
    try:
        files = list_micrographs(mics)
    except PixerError as exc:
        raise PixerError(f"micrographs: {exc}") from None
    apix = _number(row.get("apix", ""), "apix")
    no_header = [f for f in files if f.suffix.lower() in RASTER_SUFFIXES + TIFF_SUFFIXES]
    if apix is None and no_header:
        raise PixerError(f"apix is empty but {no_header[0].name} carries no pixel size")
    no_header = _mrc_without_apix(files) if apix is None else []
    if no_header:
        more = f" (nor do {len(no_header) - 1} more)" if len(no_header) > 1 else ""
        raise PixerError(f"apix is empty and {no_header[0].name} has no pixel size in its header{more}: {APIX_HINT}")
    diameter = _number(row["diameter"], "diameter")
    if diameter is None:
        raise PixerError("diameter is empty")
    truth = _resolve(row["truth"], base) if row.get("truth") else None
    if truth is not None and not (Path(truth).exists() or any(c in truth for c in "*?[")):
        raise PixerError(f"truth: {truth}: no such file or folder")
    if row.get("model"):
        model_dir = str(resolve_model(GENERAL)) if row["model"] == GENERAL else _resolve(row["model"], base)
    else:  # --model, else the general model shipped with pixer (as `pixer pick`)
        model_dir = str(resolve_model(model))
    if not (Path(model_dir) / "config.json").is_file():
        raise PixerError(f"model: {model_dir}: not a pixer model folder (no config.json)")
    return Dataset(row["dataset"], 0, mics, len(files), apix, diameter, truth, str(model_dir),
                   parse_peers(row["peers"]) if row.get("peers") else peers)  # fmt: skip


def _check_widths(path: Path) -> None:
    """A row with more fields than the header is an error (pandas would shift it into an index).

    Rows are numbered as :func:`read_samplesheet` numbers them: blank and ``#`` comment lines
    skipped, the header row 1.
    """
    try:
        text = path.read_text()
    except UnicodeDecodeError as exc:
        raise file_error(path, f"not a readable CSV samplesheet ({type(exc).__name__})") from None
    lines = [line.split("#", 1)[0] for line in text.splitlines()]
    rows = [r for r in csv.reader(line for line in lines if line.strip()) if r]
    for n, row in enumerate(rows[1:], 2):
        if len(row) > len(rows[0]):
            raise file_error(path, f"row {n} has {len(row)} fields, the header {len(rows[0])}")


def read_samplesheet(path: str | Path, model: str | None = None, peers: tuple[str, ...] = ()) -> list[Dataset]:
    """Read and check a samplesheet (see the module docstring).

    Parameters
    ----------
    path
        The samplesheet CSV.
    model
        Model folder for rows without a ``model``.
    peers
        Peers for rows without a ``peers`` value.

    Raises
    ------
    PixerError
        ``"<samplesheet>: row <n> (<dataset>): <problem>"``, ``"<samplesheet>: row <n> has <k>
        fields, the header <m>"``, or a missing column / empty sheet.
    """
    path = Path(path)
    if not path.is_file():
        raise file_error(path, "no such samplesheet")
    _check_widths(path)
    try:
        sheet = pd.read_csv(path, dtype=str, keep_default_na=False, skipinitialspace=True, comment="#")
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise file_error(path, f"not a readable CSV samplesheet ({type(exc).__name__})") from None
    sheet.columns = [str(c).strip().lower() for c in sheet.columns]
    missing = [c for c in REQUIRED if c not in sheet.columns]
    if missing:
        raise file_error(path, f"missing column(s) {', '.join(missing)} (found: {', '.join(sheet.columns)})")
    if sheet.empty:
        raise file_error(path, "no data sets (the samplesheet has a header only)")
    out: list[Dataset] = []
    seen: set[str] = set()
    for i, row in enumerate(sheet.to_dict("records")):
        row = {k: str(v).strip() for k, v in row.items()}
        where = f"row {i + 2} ({row['dataset'] or 'no dataset id'})"
        try:
            if not row["dataset"]:
                raise PixerError("dataset is empty")
            if row["dataset"] in seen:
                raise PixerError("dataset id used twice")
            ds = _check_row(row, path.resolve().parent, model, tuple(peers))  # the real file, not a staged link
        except PixerError as exc:
            raise file_error(path, f"{where}: {exc}") from None
        seen.add(ds.name)
        out.append(replace(ds, row=i + 2))
    return out


def _read_truth(ds: Dataset) -> pd.DataFrame:
    """The data set's true particles; a PixerError when they name none of its micrographs, a
    ``warning:`` line on stderr when only some."""
    files = list_micrographs(ds.micrographs)
    truth = read_mask_truth(ds.truth, files) if is_mask_source(ds.truth) else read_picks(ds.truth)
    partial = check_truth_names([str(f) for f in files], truth, f"micrographs of {ds.micrographs}", ds.truth)
    if partial:
        print(f"pixer benchmark: warning: {ds.name}: {partial}", file=sys.stderr, flush=True)
    return truth


def _scored(df: pd.DataFrame) -> pd.DataFrame:
    return df if "score" in df and df["score"].notna().all() else df.assign(score=1.0)


def _score(picks: pd.DataFrame, curve: pd.DataFrame, truth: pd.DataFrame, diameter_px: float) -> dict:
    """P/R/F1 of ``picks`` as they are; best F1 / AUPRC over the scores of ``curve``."""
    at = evaluate(_scored(picks), truth, diameter_px=diameter_px)
    sweep = evaluate(_scored(curve), truth, diameter_px=diameter_px)
    return {"n_true": at["n_true"], "precision": at["precision"], "recall": at["recall"], "f1": at["f1"],
            "best_f1": sweep["best_f1"], "best_threshold": sweep["best_threshold"], "auprc": sweep["auprc"]}


def _run_pixer(ds: Dataset, dest: Path, truth: pd.DataFrame | None, pick_options: list[str]) -> dict:
    """``pixer pick`` on one data set (in this process), then its scores."""
    # The pick command, as users run it, is what is measured (its threshold rule lives there).
    from pixer.cli.main import build_parser

    argv = ["pick", "--micrographs", ds.micrographs, "--model", ds.model, "--diameter", f"{ds.diameter_A:g}",
            "--out", str(dest), *(["--apix", f"{ds.apix:g}"] if ds.apix else []), *pick_options]  # fmt: skip
    args = build_parser().parse_args(argv)
    t0 = time.perf_counter()
    args._main(args)
    row = {"seconds": time.perf_counter() - t0}
    run = load_run(dest)  # a run without any pick has empty picks
    row.update(n_micrographs=len(run.done()), n_picks=len(run.picks), threshold=run.record.get("threshold"))
    if truth is not None:
        curve = run.candidates if run.candidates is not None else run.picks
        row.update(_score(run.picks, curve, truth, ds.diameter_A / run.record["apix"]))
    return row


def _peer_function(name: str):
    """``bench/compare_peers.py``'s ``pick_<name>``, or a reason why there is none."""
    if not PEERS_SCRIPT.is_file():
        return None, f"{PEERS_SCRIPT} not found"
    try:
        spec = importlib.util.spec_from_file_location("pixer_bench_compare_peers", PEERS_SCRIPT)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    except Exception as exc:  # noqa: BLE001 - a broken helper script must not stop the benchmark
        return None, f"cannot load {PEERS_SCRIPT.name}: {type(exc).__name__}: {exc}"
    fn = getattr(module, f"pick_{name}", None)
    return (fn, "") if callable(fn) else (None, f"{PEERS_SCRIPT.name} has no pick_{name}()")


def _run_lattice(ds: Dataset, dest: Path, truth: pd.DataFrame | None) -> dict:
    """The chance level (:func:`pixer.evaluate.baseline.chance_level`) on one data set; its picks
    at one diameter's spacing go to ``dest/picks.csv``."""
    t0 = time.perf_counter()
    files = list_micrographs(ds.micrographs)
    shapes = micrograph_shapes(files, ds.apix)
    apix = ds.apix or read_micrograph(files[0], raw=True).apix
    if not apix:
        return {"status": f"failed: {files[0].name}: pixel size unknown (give apix in the samplesheet)"}
    d = ds.diameter_A / apix
    picks = lattice_picks(shapes, d, 0.5 * d)
    dest.mkdir(parents=True, exist_ok=True)
    with atomic_path(dest / "picks.csv") as tmp:
        picks.to_csv(tmp, index=False, float_format="%.2f")
    row = {"threshold": "image-blind hex lattice, 1 d apart", "n_micrographs": len(shapes), "n_picks": len(picks)}
    if truth is not None:
        at = evaluate(picks, truth, diameter_px=d)
        best = chance_level(truth, shapes, d)
        row.update(n_true=at["n_true"], precision=at["precision"], recall=at["recall"], f1=at["f1"],
                   best_f1=best["f1"], best_threshold=np.nan, auprc=np.nan,
                   threshold=f"{row['threshold']} (best F1: {best['spacing']:g} d)")
    return {**row, "seconds": time.perf_counter() - t0}


def _header_pixel_size(ds: Dataset) -> float | None:
    """Pixel size in the header of the data set's first micrograph (None when it has none)."""
    files = list_micrographs(ds.micrographs)
    return read_micrograph(files[0], raw=True).apix if files else None


def _run_peer(name: str, ds: Dataset, dest: Path, truth: pd.DataFrame | None) -> dict:
    """One peer on one data set: its scores, or ``status`` saying why not."""
    if name == "lattice":
        return _run_lattice(ds, dest, truth)
    fn, why = _peer_function(name)
    if fn is None:
        return {"status": f"not available: {why}"}
    t0 = time.perf_counter()
    try:
        result = fn([Path(p) for p in list_micrographs(ds.micrographs)], dest, diameter_A=ds.diameter_A, apix=ds.apix)
    except Exception as exc:  # noqa: BLE001 - a peer that breaks is reported, not fatal
        return {"status": f"failed: {type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}"}
    if not result or result.get("skipped"):
        return {"status": f"not available: {(result or {}).get('skipped', 'not installed')}"}
    row = {"seconds": result.get("seconds", time.perf_counter() - t0), "threshold": result.get("threshold")}
    picks = read_picks(result["default"])
    row.update(n_micrographs=picks["micrograph"].nunique(), n_picks=len(picks))
    if truth is not None:
        known = picks["apix"].dropna() if "apix" in picks else pd.Series(dtype=float)
        apix = ds.apix or (float(known.median()) if len(known) else None) or _header_pixel_size(ds)
        if not apix:
            return {**row, "status": f"failed: pixel size unknown for scoring ({APIX_HINT})"}
        curve = read_picks(result["permissive"]) if result.get("permissive") else picks
        row.update(_score(picks, curve, truth, ds.diameter_A / apix))
    return row


def run_benchmark(datasets: list[Dataset], out: str | Path, pick_options: list[str] | None = None) -> pd.DataFrame:
    """Pick and score every data set (and its peers); return the comparison table.

    Parameters
    ----------
    datasets
        From :func:`read_samplesheet`.
    out
        Output folder: ``<out>/<dataset>/pixer`` (the pick run, resumable) and
        ``<out>/<dataset>/<peer>``.
    pick_options
        Extra ``pixer pick`` arguments, e.g. ``["--cluster", "none"]``.

    Returns
    -------
    pandas.DataFrame
        One row per data set and picker, :data:`TABLE_COLUMNS`; a data set that
        fails keeps its row with ``status`` = ``failed: <reason>``.
    """
    out = Path(out)
    rows = []
    for k, ds in enumerate(datasets, 1):
        print(f"[{k}/{len(datasets)}] {ds.name}: {ds.n_micrographs} micrographs", flush=True)
        folder = out / safe_relpath(ds.name, drop_ext=False)
        try:
            truth = _read_truth(ds) if ds.truth else None
        except PixerError as exc:
            truth, truth_error = None, str(exc)
        else:
            truth_error = ""
        for picker in ("pixer", *ds.peers):
            base = {"dataset": ds.name, "picker": picker, "status": "ok"}
            try:
                if truth_error:
                    raise PixerError(f"truth: {truth_error}")
                if picker == "pixer":
                    row = _run_pixer(ds, folder / "pixer", truth, list(pick_options or []))
                else:
                    row = _run_peer(picker, ds, folder / picker, truth)
            except PixerError as exc:
                reason = str(exc)
                if ds.apix is None:  # pixer pick's advice; benchmark takes the pixel size from the samplesheet
                    reason = reason.replace("pass --apix", APIX_HINT)
                row = {"status": f"failed: {reason}"}
            rows.append({**base, **row})
            print(f"  {picker}: {_line(rows[-1])}", flush=True)
    table = pd.DataFrame(rows).reindex(columns=TABLE_COLUMNS)
    return table


def _line(row: dict) -> str:
    if row.get("status") != "ok":
        return row["status"]
    if row.get("best_f1") is None or pd.isna(row.get("best_f1")):
        return f"{row.get('n_picks')} picks (no truth)"
    auprc = "-" if pd.isna(row.get("auprc")) else f"{row['auprc']:.3f}"
    return f"F1 {row['f1']:.3f} at threshold {row['threshold']}, best F1 {row['best_f1']:.3f}, AUPRC {auprc}"


def _markdown(table: pd.DataFrame) -> str:
    def cell(v) -> str:
        if v is None or (isinstance(v, float) and math.isnan(v)):
            return "-"
        if isinstance(v, (float, np.floating)):
            return f"{v:.3f}" if not float(v).is_integer() else str(int(v))
        return str(v).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(table.columns) + " |", "|" + "---|" * len(table.columns)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in table.itertuples(index=False)]
    return "\n".join(lines) + "\n"


def _bar_plot(table: pd.DataFrame, path: Path) -> None:
    datasets = list(dict.fromkeys(table["dataset"]))
    pickers = list(dict.fromkeys(table["picker"]))
    fig = Figure(figsize=(4 * len(PLOTTED), 3.6))
    width = 0.8 / max(len(pickers), 1)
    for j, (col, title) in enumerate(PLOTTED.items()):
        ax = fig.add_subplot(1, len(PLOTTED), j + 1)
        for i, picker in enumerate(pickers):
            sub = table[table["picker"] == picker].set_index("dataset")
            values = [float(sub[col].get(d, np.nan)) for d in datasets]
            x = np.arange(len(datasets)) + (i - (len(pickers) - 1) / 2) * width
            ax.bar(x, np.nan_to_num(values), width, label=picker)
            for xi, v, d in zip(x, values, datasets):
                if np.isnan(v) and d in sub.index:  # run (or asked for) but no number: say so
                    ax.text(xi, 0.02, "n/a", rotation=90, ha="center", va="bottom", fontsize=7)
        ax.set_xticks(np.arange(len(datasets)), datasets, rotation=20, ha="right", fontsize=8)
        ax.set(ylim=(0, 1.05), title=title)
        ax.grid(alpha=0.3, axis="y")
        if j == 0:
            ax.legend(fontsize=8)
    fig.tight_layout()
    FigureCanvasAgg(fig)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)


def write_table(table: pd.DataFrame, out: str | Path) -> dict[str, Path]:
    """Write ``benchmark.csv``, ``benchmark.md`` and ``benchmark.png`` into ``out`` (atomically)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"csv": out / "benchmark.csv", "markdown": out / "benchmark.md", "plot": out / "benchmark.png"}
    with atomic_path(paths["csv"]) as tmp:
        table.to_csv(tmp, index=False, float_format="%.4f")
    write_text_atomic(paths["markdown"], _markdown(table))
    _bar_plot(table, paths["plot"])
    return paths
