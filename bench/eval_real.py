"""pixer vs Topaz (pretrained resnet16) vs RELION 3.1 LoG on REAL micrographs (CryoPPP subset).

Data: ``../shared/data/cryoppp_subset`` (EMPIAR-10028, 10059, 10947; 10 micrographs each as
1024² 8-bit PNG, split train 4 / valid 1 / test 5, CryoPPP disc masks). Nothing is copied into
the repository; everything is written under ``--work`` (default /tmp/pixer_real).

Units: the PNGs carry no pixel size, so every picker works in PNG pixels: pixel size 1 "Å"/px
and the particle diameter in pixels (10028: 55, 10059: 36, 10947: 58, read off the masks).
Every picker gets the same float32 MRC files (PNG values as they are, row 0 of the PNG = row 0
of the MRC array = y 0, header pixel size 1). Particles are dark on a lighter background in
all three sets (checked: the low-passed image is lower at the mask centres than at random
points), i.e. the usual cryo-EM contrast that all three pickers assume: nothing is inverted.

Truth: centres from the masks with ``pixer.evaluate.masks.read_mask_truth`` (what
``pixer benchmark`` uses). Scoring: ``pixer.evaluate.evaluate`` for every picker
(one-to-one Hungarian matching within 0.5 × diameter; AUPRC as Topaz defines it).

Stages (``--stages``, default all):

* ``prepare``  PNG → MRC per data set and split (``trainval`` = train + valid), truth CSVs;
* ``tune``     settings on ``trainval`` only: Topaz ``preprocess -s`` ∈ ``--topaz-scales``,
  RELION LoG diameter window ∈ ``--relion-windows`` (× diameter), pixer's diameter × ``--pixer-factors``
  per ``--model``; the best F1 wins;
* ``train``    pixer fine-tuned per data set on ``trainval`` (``--ft-steps``; from scratch, or from
  ``--ft-init general``);
* ``test``     every picker on the test split (with ``--adapt`` also ``pixer pick --adapt``); table + PR curves; ``lattice`` is the chance level, an
  image-blind hexagonal lattice of picks (``pixer.evaluate.baseline``), for reference;
* ``control``  simulated micrographs with no particles (interference on), picks per micrograph.

Example::

    python bench/eval_real.py --model sim=/tmp/pbench/model --stages prepare tune train test control
    python bench/eval_real.py --model sim=/tmp/pbench/model general=pixer/models/weights/general --stages test
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "cryoppp_subset"
DIAMETER_PX = {"10028": 55.0, "10059": 36.0, "10947": 58.0}
APIX = 1.0  # PNG pixels
PIXER = [sys.executable, "-m", "pixer.cli.main"]
TOPAZ_VENV = Path(os.environ.get("TOPAZ_VENV", "/work/topaz-venv"))


# --- data ----------------------------------------------------------------------------------------

def png_to_mrc(png: Path, mrc: Path, apix: float = APIX) -> np.ndarray:
    """Write ``png`` as a float32 MRC: same values, same orientation (array row 0 = PNG row 0)."""
    import mrcfile
    from PIL import Image

    data = np.asarray(Image.open(png).convert("L"), dtype=np.float32)
    mrc.parent.mkdir(parents=True, exist_ok=True)
    tmp = mrc.with_suffix(".tmp.mrc")
    with mrcfile.new(tmp, overwrite=True) as f:
        f.set_data(data)
        f.voxel_size = apix
    tmp.replace(mrc)
    return data


def micrographs_star(folder: Path, apix: float = APIX) -> Path:
    """RELION 3.1 micrographs STAR beside ``folder/micrographs`` (relative names, one optics group)."""
    lines = ["# version 30001", "", "data_optics", "", "loop_", "_rlnOpticsGroup #1", "_rlnOpticsGroupName #2",
             "_rlnMicrographPixelSize #3", "_rlnVoltage #4", "_rlnSphericalAberration #5",
             "_rlnAmplitudeContrast #6", f"1 opticsGroup1 {apix} 300 2.7 0.1", "", "# version 30001", "",
             "data_micrographs", "", "loop_", "_rlnMicrographName #1", "_rlnOpticsGroup #2"]
    lines += [f"micrographs/{p.name} 1" for p in sorted((folder / "micrographs").glob("*.mrc"))]
    star = folder / "micrographs.star"
    star.write_text("\n".join(lines) + "\n")
    return star


def prepare(data: Path, work: Path, datasets: list[str]) -> None:
    from pixer.evaluate.masks import read_mask_truth

    for ds in datasets:
        for split, parts in (("test", ["test"]), ("trainval", ["train", "valid"])):
            folder = work / "mrc" / ds / split
            truths = []
            for part in parts:
                mrcs = []
                for png in sorted((data / ds / part / "images").glob("*.png")):
                    mrc = folder / "micrographs" / (png.stem + ".mrc")
                    if not mrc.exists():
                        png_to_mrc(png, mrc)
                    mrcs.append(mrc)
                truths.append(read_mask_truth(data / ds / part / "labels", mrcs))
            micrographs_star(folder)
            truth = pd.concat(truths, ignore_index=True)
            truth["micrograph"] = truth["micrograph"].map(lambda s: Path(s).name)
            truth.to_csv(work / "mrc" / ds / f"truth_{split}.csv", index=False)
            n_derived = sum(len(pd.read_csv(c)) for part in parts
                            for c in (data / ds / part / "derived_coords").glob("*.csv"))
            print(f"{ds} {split}: {len(list((folder / 'micrographs').glob('*.mrc')))} micrographs, "
                  f"{len(truth)} mask centres ({n_derived} in derived_coords)", flush=True)


def truth_of(work: Path, ds: str, split: str) -> pd.DataFrame:
    return pd.read_csv(work / "mrc" / ds / f"truth_{split}.csv", dtype={"micrograph": str})


def run(cmd: list[str], log: Path, cwd: Path | None = None, env: dict | None = None) -> float:
    log.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    with open(log, "w") as fh:
        fh.write(" ".join(map(str, cmd)) + "\n")
        fh.flush()
        r = subprocess.run([str(c) for c in cmd], stdout=fh, stderr=subprocess.STDOUT, cwd=cwd, env=env)
    if r.returncode:
        raise RuntimeError(f"command failed ({r.returncode}), see {log}")
    return time.perf_counter() - t0


def score(picks: pd.DataFrame, curve: pd.DataFrame, truth: pd.DataFrame, diameter_px: float) -> dict:
    """P/R/F1 of ``picks`` as they are; best F1, AUPRC and the curve from ``curve``'s scores."""
    from pixer.evaluate.metrics import evaluate

    def scored(df):
        return df if "score" in df and df["score"].notna().all() else df.assign(score=1.0)

    at = evaluate(scored(picks), truth, diameter_px=diameter_px)
    sweep = evaluate(scored(curve), truth, diameter_px=diameter_px)
    return {"n_true": at["n_true"], "n_picks": at["n_picks"], "precision": at["precision"],
            "recall": at["recall"], "f1": at["f1"], "best_f1": sweep["best_f1"],
            "best_threshold": sweep["best_threshold"], "best_precision": sweep["best_precision"],
            "best_recall": sweep["best_recall"], "auprc": sweep["auprc"],
            "_curve": (sweep["precision_curve"], sweep["recall_curve"])}


def read_any(spec) -> pd.DataFrame:
    from pixer.errors import PixerError
    from pixer.io.coords import read_picks

    try:
        df = read_picks(spec)
    except PixerError:
        return pd.DataFrame({"micrograph": pd.Series(dtype=str), "x": [], "y": [], "score": []})
    df["micrograph"] = df["micrograph"].map(lambda s: Path(str(s)).name)
    return df


# --- pickers -------------------------------------------------------------------------------------

def pick_pixer(folder: Path, out: Path, model: Path, diameter_px: float, edge_fraction: float = 0.0,
               factor: float = 1.0, search: bool = False, extra: tuple[str, ...] = ()) -> dict:
    """``pixer pick`` (default threshold) in one process; the stored candidates (> 0.001) give the curve.
    ``edge_fraction`` > 0 adds ``--edge-margin edge_fraction × diameter``; ``factor`` scales the
    ``--diameter`` pixer is given (the diameter read off the masks stays the scoring one); ``search``
    lets pixer choose the diameter itself (its default ``--diameter-search`` for a model with a
    background), else ``--no-diameter-search`` keeps the one given; ``extra`` are more ``pixer pick``
    arguments (e.g. ``--adapt``)."""
    from pixer.pick.batch import gather_parts

    shutil.rmtree(out, ignore_errors=True)
    cmd = PIXER + ["pick", "--micrographs", folder / "micrographs", "--model", model, "--diameter",
                   f"{factor * diameter_px:g}", "--apix", f"{APIX:g}", "--out", out, "--cluster", "none",
                   "--no-progress"] + ([] if search else ["--no-diameter-search"]) + list(extra)
    if edge_fraction > 0:
        cmd += ["--edge-margin", f"{edge_fraction * diameter_px * APIX:g}"]
    t = run(cmd, out.parent / (out.name + ".log"))
    summary = pd.read_csv(out / "summary.csv", dtype={"micrograph": str})
    done = summary.loc[summary["status"] != "failed", "micrograph"].astype(str).tolist()
    rec = json.loads((out / "pixer_pick.json").read_text())
    cand = gather_parts(out, done)
    cand = cand.assign(micrograph=cand["micrograph"].map(lambda s: Path(str(s)).name)) if len(cand) else cand
    return {"default": read_any(out / "picks.csv"), "curve": cand, "seconds": t,
            "threshold": rec.get("threshold"), "command": " ".join(map(str, cmd))}


def relion_cmd(folder: Path, dest: Path, diameter_px: float, window: float, adjust: float,
               apix: float = APIX) -> list:
    d_A = diameter_px * apix
    return ["relion_autopick", "--i", "micrographs.star", "--odir", str(dest.resolve()) + "/",
            "--pickname", "autopick", "--LoG", "--LoG_diam_min", f"{d_A * (1 - window):g}",
            "--LoG_diam_max", f"{d_A * (1 + window):g}", "--shrink", "0",
            "--lowpass", f"{d_A / 6:g}", "--angpix", f"{apix:g}", "--LoG_adjust_threshold", f"{adjust:g}"]


def pick_relion_folder(folder: Path, out: Path, diameter_px: float, window: float,
                       apix: float = APIX) -> dict:
    """RELION LoG at its default threshold (adjust 0) and a permissive run (adjust -1) for the curve.

    Rule carried over from the simulated benchmark: ``--lowpass`` = diameter / 6 (20 Å for 120 Å),
    ``--shrink 0``; the LoG window ``[1 - w, 1 + w] × diameter`` is tuned on train/valid.
    """
    res = {}
    for key, adjust in (("default", 0.0), ("curve", -1.0)):
        dest = out / key
        shutil.rmtree(dest, ignore_errors=True)
        cmd = relion_cmd(folder, dest, diameter_px, window, adjust, apix)
        t = run(cmd, out / f"{key}.log", cwd=folder)
        res[key] = read_any(dest / "micrographs")
        if key == "default":
            res["seconds"], res["command"] = t, f"cd {folder} && " + " ".join(cmd)
    res["threshold"] = "adjust 0"
    return res


def topaz_scale_rule(diameter_px: float) -> int:
    """Topaz downsampling for a particle of ``diameter_px``: about 30 px across afterwards, 1..4."""
    return int(min(4, max(1, round(diameter_px / 30))))


def topaz_available() -> str:
    py = TOPAZ_VENV / "bin" / "python"
    return "" if py.exists() else f"{py} missing (bash bench/peers.sh topaz)"


def pick_topaz_folder(folder: Path, out: Path, diameter_px: float, scale: int) -> dict:
    """``topaz preprocess -s scale`` + ``extract -m resnet16 -r (d/2/scale) -x scale`` (default -t -6)."""
    py = str(TOPAZ_VENV / "bin" / "python")
    mics = sorted((folder / "micrographs").glob("*.mrc"))
    radius = max(1, int(round(diameter_px / 2 / scale)))
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    env = dict(os.environ, OMP_NUM_THREADS=str(os.cpu_count()))
    pre = [py, "-m", "topaz.commands.preprocess", "-s", str(scale), "-o", str(out / "pre") + "/"] + mics
    patch = ["-p", "512"] if 1024 // scale > 512 else []
    ext = [py, "-m", "topaz.commands.extract", "-m", "resnet16", "-r", str(radius), "-x", str(scale)] + patch + \
          ["-o", out / "picks_topaz.txt"] + [out / "pre" / m.name for m in mics]
    t = run(pre, out / "preprocess.log", env=env) + run(ext, out / "extract.log", env=env)
    picks = read_any(out / "picks_topaz.txt")
    return {"default": picks, "curve": picks, "score_gt_0": picks[picks["score"] > 0], "seconds": t,
            "threshold": "-t -6", "scale": scale, "radius": radius,
            "command": " ".join(map(str, pre)) + " && " + " ".join(map(str, ext))}


def pick_lattice_folder(folder: Path, diameter_px: float, truth: pd.DataFrame) -> dict:
    """The chance level: an image-blind hex lattice 1 d apart (its best F1 over spacings 0.6-1.2 d;
    :mod:`pixer.evaluate.baseline`)."""
    from pixer.evaluate.baseline import chance_level, lattice_picks, micrograph_shapes

    shapes = micrograph_shapes(sorted((folder / "micrographs").glob("*.mrc")), APIX)
    picks = lattice_picks(shapes, diameter_px, 0.5 * diameter_px)
    best = chance_level(truth, shapes, diameter_px)
    return {"default": picks, "curve": picks, "seconds": 0.0, "threshold": f"lattice 1 d (best {best['spacing']:g} d)",
            "best_f1": best["f1"], "command": "pixer.evaluate.baseline.chance_level"}


# --- `pixer benchmark --peers` interface (also re-exported by compare_peers.py) -----------------

def _stage(micrographs: list[Path], out: Path, apix: float | None) -> tuple[Path, float]:
    """Micrographs as MRC in ``out/input/micrographs`` (+ micrographs.star) for the peers."""
    folder = out / "input"
    (folder / "micrographs").mkdir(parents=True, exist_ok=True)
    apix = apix or 1.0
    for m in micrographs:
        dest = folder / "micrographs" / (Path(m).stem + ".mrc")
        if dest.exists():
            continue
        if Path(m).suffix.lower() == ".mrc":
            os.symlink(Path(m).resolve(), dest)
        else:
            png_to_mrc(Path(m), dest, apix)
    micrographs_star(folder, apix)
    return folder, apix


def pick_relion(micrographs: list[Path], out: Path, *, diameter_A: float, apix: float | None,
                window: float = 0.1) -> dict:
    if shutil.which("relion_autopick") is None:
        return {"skipped": "relion_autopick not on PATH (bash bench/peers.sh relion)"}
    folder, apix = _stage(micrographs, Path(out), apix)
    res = pick_relion_folder(folder, Path(out), diameter_A / apix, window, apix)
    return {"default": Path(out) / "default" / "micrographs", "permissive": Path(out) / "curve" / "micrographs",
            "seconds": res["seconds"], "threshold": 0.0}


def pick_topaz(micrographs: list[Path], out: Path, *, diameter_A: float, apix: float | None,
               scale: int | None = None) -> dict:
    why = topaz_available()
    if why:
        return {"skipped": why}
    folder, apix = _stage(micrographs, Path(out), apix)
    d_px = diameter_A / apix
    # rule: Topaz's -s 2 of the simulated benchmark (60 px → 30 px) as a target of ~30 px across,
    # s = round(d / 30) in 1..4 (d in micrograph pixels)
    scale = scale or topaz_scale_rule(d_px)
    res = pick_topaz_folder(folder, Path(out) / "topaz", d_px, scale)
    return {"default": Path(out) / "topaz" / "picks_topaz.txt", "seconds": res["seconds"], "threshold": -6.0}


# --- stages --------------------------------------------------------------------------------------

def tune(work: Path, datasets: list[str], scales: list[int], windows: list[float],
         pickers: tuple[str, ...] = ("topaz", "relion"), models: dict[str, Path] | None = None,
         factors: list[float] = (), edge_fraction: float = 0.0) -> dict:
    """Settings from train+valid (5 micrographs per set): best F1 over the permissive scores.

    Peers: Topaz's preprocessing scale, RELION's LoG diameter window. pixer: the factor on the
    diameter it is given (``factors``; the masks' diameter is generous on some sets), per model
    (a fine-tuned model was trained on these same micrographs, so its choice is optimistic).
    """
    path = work / "tuning.json"
    tuned = json.loads(path.read_text()) if path.exists() else {}
    for ds in datasets:
        folder, d = work / "mrc" / ds / "trainval", DIAMETER_PX[ds]
        truth = truth_of(work, ds, "trainval")
        entry = tuned.setdefault(ds, {"topaz": {}, "relion": {}})
        sweeps = []  # (picker, setting, label, run)
        if "topaz" in pickers and not topaz_available():
            sweeps += [("topaz", s, f"topaz s={s}", lambda s=s: pick_topaz_folder(
                folder, work / "tune" / ds / f"topaz_s{s}", d, s)) for s in scales]
        if "relion" in pickers and shutil.which("relion_autopick"):
            sweeps += [("relion", w, f"relion window ±{w}", lambda w=w: pick_relion_folder(
                folder, work / "tune" / ds / f"relion_w{w}", d, w)) for w in windows]
        if "pixer" in pickers and len(factors) > 1:
            for name, model in (models or {}).items():
                model = Path(str(model).replace("{ds}", ds))
                if not (model / "config.json").exists():
                    continue
                key = pixer_key(name, edge_fraction)
                entry.setdefault(key, {})
                sweeps += [(key, f, f"pixer[{name}] d×{f:g}", lambda m=model, f=f: pick_pixer(
                    folder, work / "tune" / ds / f"pixer_{name}_f{f:g}_e{edge_fraction:g}", m, d, edge_fraction, f))
                    for f in factors]  # fmt: skip
        for picker, setting, label, run_picker in sweeps:
            if str(setting) in entry[picker]:
                continue
            r = run_picker()
            m = score(r["default"], r["curve"], truth, d)
            entry[picker][str(setting)] = {k: m[k] for k in ("best_f1", "auprc", "f1")}
            print(f"tune {ds} {label}: best F1 {m['best_f1']:.3f} AUPRC {m['auprc']:.3f} F1@default {m['f1']:.3f}",
                  flush=True)
            path.write_text(json.dumps(tuned, indent=2))
    return tuned


def pixer_key(name: str, edge_fraction: float) -> str:
    """tuning.json key of a pixer model's diameter factors (they depend on the edge margin too)."""
    return f"pixer:{name}" + (f":edge{edge_fraction:g}" if edge_fraction > 0 else "")


def best_setting(tuned: dict, ds: str, picker: str, fallback, among=None):
    opts = tuned.get(ds, {}).get(picker, {})
    if among is not None:
        opts = {k: v for k, v in opts.items() if float(k) in {float(a) for a in among}}
    if not opts:
        return fallback
    key = max(opts, key=lambda k: (opts[k]["best_f1"], opts[k]["auprc"]))
    return type(fallback)(float(key)) if picker == "topaz" else float(key)


def train(work: Path, datasets: list[str], steps: int, init: str | None) -> None:
    for ds in datasets:
        tag = "ft" if not init else f"ft_{Path(init).name}"
        out = work / "models" / f"{tag}_{ds}"
        if (out / "config.json").exists():
            continue
        folder = work / "mrc" / ds / "trainval"
        cmd = PIXER + ["train", "--micrographs", folder / "micrographs", "--coords", work / "mrc" / ds /
                       "truth_trainval.csv", "--diameter", f"{DIAMETER_PX[ds]:g}", "--apix", f"{APIX:g}",
                       "--out", out, "--steps", str(steps), "--no-progress"]
        if init:
            cmd += ["--init", init]
        t = run(cmd, work / "models" / f"{tag}_{ds}.log")
        print(f"trained {out} in {t:.0f} s", flush=True)


def test(work: Path, datasets: list[str], models: dict[str, Path], pickers: list[str], tuned: dict,
         edge_fraction: float = 0.0, factors: list[float] = (), adapt: bool = False) -> pd.DataFrame:
    rows, curves = [], {}
    for ds in datasets:
        folder, d = work / "mrc" / ds / "test", DIAMETER_PX[ds]
        truth = truth_of(work, ds, "test")
        n = len(list((folder / "micrographs").glob("*.mrc")))
        runs = []
        for name, model in models.items():
            model = Path(str(model).replace("{ds}", ds))
            if "pixer" in pickers and (model / "config.json").exists():
                from pixer.pick.search import background_of

                f = best_setting(tuned, ds, pixer_key(name, edge_fraction), 1.0, among=factors) if len(factors) > 1 else 1.0
                tag = name + (f",edge {edge_fraction:g}d" if edge_fraction > 0 else "")
                sub = f"pixer_{name}" + (f"_edge{edge_fraction:g}" if edge_fraction > 0 else "")
                runs.append((f"pixer[{tag}" + (f",d×{f:g}" if f != 1 else "") + "]",
                             lambda m=model, s=sub + (f"_f{f:g}" if f != 1 else ""), f=f: pick_pixer(
                                 folder, work / "test" / ds / s, m, d, edge_fraction, f)))
                if background_of(json.loads((model / "config.json").read_text())):
                    # no tuning at all: the masks' diameter, and pixer's own diameter search
                    runs.append((f"pixer[{tag},d search]", lambda m=model, s=sub + "_search": pick_pixer(
                        folder, work / "test" / ds / s, m, d, edge_fraction, 1.0, search=True)))
                    for f_a, search in ((f, False), (1.0, True)) if adapt else ():
                        # self-trained on the test micrographs themselves (no labels)
                        what = ",d search" if search else (f",d×{f_a:g}" if f_a != 1 else "")
                        s = sub + ("_search" if search else (f"_f{f_a:g}" if f_a != 1 else "")) + "_adapt"
                        runs.append((f"pixer[{tag},adapt{what}]", lambda m=model, s=s, f_a=f_a, q=search: pick_pixer(
                            folder, work / "test" / ds / s, m, d, edge_fraction, f_a, search=q, extra=("--adapt",))))
        if "topaz" in pickers and not topaz_available():
            s = best_setting(tuned, ds, "topaz", 2)
            runs.append((f"topaz[s={s}]", lambda s=s: pick_topaz_folder(folder, work / "test" / ds / "topaz", d, s)))
        if "relion" in pickers and shutil.which("relion_autopick"):
            w = best_setting(tuned, ds, "relion", 0.1)
            runs.append((f"relion[±{w:g}]", lambda w=w: pick_relion_folder(folder, work / "test" / ds / "relion",
                                                                          d, w)))
        if "lattice" in pickers:
            runs.append(("lattice", lambda: pick_lattice_folder(folder, d, truth)))
        for label, fn in runs:
            try:
                r = fn()
            except Exception as exc:  # noqa: BLE001
                rows.append({"dataset": ds, "picker": label, "status": f"failed: {exc}"})
                print(f"{ds} {label}: failed: {exc}", flush=True)
                continue
            m = score(r["default"], r["curve"], truth, d)
            curves[(ds, label)] = m.pop("_curve")
            if "best_f1" in r:  # not from a score sweep: no curve, no AUPRC
                m.update(best_f1=r["best_f1"], best_threshold=None, auprc=None)
                curves.pop((ds, label))
            row = {"dataset": ds, "picker": label, "status": "ok", "n_micrographs": n, **m,
                   "threshold": r.get("threshold"), "picks_per_mic": m["n_picks"] / n,
                   "s_per_mic": r["seconds"] / n, "command": r.get("command")}
            rows.append(row)
            print(f"{ds} {label}: P {m['precision']:.3f} R {m['recall']:.3f} F1 {m['f1']:.3f} | best F1 "
                  f"{m['best_f1']:.3f} AUPRC {'-' if m['auprc'] is None else format(m['auprc'], '.3f')} | "
                  f"{row['picks_per_mic']:.0f} picks/mic, "
                  f"{row['s_per_mic']:.1f} s/mic", flush=True)
            if "score_gt_0" in r:
                m0 = score(r["score_gt_0"], r["score_gt_0"], truth, d)
                m0.pop("_curve")
                rows.append({**row, **m0, "picker": label + " score>0", "threshold": "score > 0",
                             "picks_per_mic": m0["n_picks"] / n, "best_f1": None, "best_threshold": None,
                             "auprc": None})
    table = pd.DataFrame(rows)
    table.to_csv(work / "real_results.csv", index=False)
    write_markdown(table, work / "real_results.md")
    plot_curves(curves, work)
    return table


def write_markdown(table: pd.DataFrame, path: Path) -> None:
    cols = ["dataset", "picker", "threshold", "precision", "recall", "f1", "best_f1", "auprc", "picks_per_mic",
            "n_true", "s_per_mic"]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r in table.to_dict("records"):
        if r.get("status") != "ok":
            lines.append(f"| {r['dataset']} | {r['picker']} | {r['status']} |" + " |" * (len(cols) - 3))
            continue
        cells = []
        for c in cols:
            v = r.get(c)
            if isinstance(v, float):
                v = "-" if np.isnan(v) else (f"{v:.0f}" if c in ("picks_per_mic", "n_true") else
                                           f"{v:.1f}" if c == "s_per_mic" else f"{v:.3f}")
            cells.append("-" if v is None else str(v))
        lines.append("| " + " | ".join(cells) + " |")
    path.write_text("\n".join(lines) + "\n")


def plot_curves(curves: dict, work: Path) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    for ds in sorted({k[0] for k in curves}):
        fig = Figure(figsize=(5, 4.5))
        FigureCanvasAgg(fig)
        ax = fig.add_subplot(111)
        for (d, label), (p, r) in curves.items():
            if d == ds and len(p):
                ax.plot(r, p, label=label)
        ax.set(xlabel="recall", ylabel="precision", xlim=(0, 1), ylim=(0, 1.02),
               title=f"EMPIAR-{ds}, test (5 micrographs)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="lower left")
        fig.tight_layout()
        fig.savefig(work / f"pr_{ds}.png", dpi=110)


def control(work: Path, models: dict[str, Path], pickers: list[str], tuned: dict, n: int = 3) -> pd.DataFrame:
    """Simulated 1024² micrographs with NO particles (interference on: carbon, ice, contaminants,
    aggregates), 2 Å/px; every picker as for a 60-px (120 Å) particle, i.e. pixer's simulated
    training target. Picks per micrograph at each picker's default threshold."""
    from pixer.simulate import simulate_dataset

    sim = work / "empty"
    if not (sim / "micrographs").exists():
        # the CLI refuses --particles 0; the library accepts it
        simulate_dataset(sim, n=n, size=1024, apix=2.0, snr_db=-10, seed=4242, particles_per_micrograph=0,
                         progress=False)
    folder = work / "empty_px"
    (folder / "micrographs").mkdir(parents=True, exist_ok=True)
    import mrcfile
    for m in sorted((sim / "micrographs").glob("*.mrc")):
        dest = folder / "micrographs" / m.name
        if not dest.exists():
            with mrcfile.open(m, permissive=True) as f, mrcfile.new(dest, overwrite=True) as g:
                g.set_data(np.asarray(f.data, dtype=np.float32))
                g.voxel_size = APIX
    micrographs_star(folder)
    d = 60.0
    rows = []
    for name, model in models.items():
        model = Path(str(model).replace("{ds}", "10028"))
        if "pixer" in pickers and (model / "config.json").exists():
            r = pick_pixer(folder, work / "control" / f"pixer_{name}", model, d, search=True)
            rows.append({"picker": f"pixer[{name}]", "picks_per_mic": len(r["default"]) / n,
                         "candidates>0.05_per_mic": int((r["curve"]["score"] > 0.05).sum()) / n if len(r["curve"]) else 0.0})
    if "topaz" in pickers and not topaz_available():
        s = 2  # as on the real sets
        r = pick_topaz_folder(folder, work / "control" / "topaz", d, s)
        rows.append({"picker": f"topaz[s={s}] -t -6", "picks_per_mic": len(r["default"]) / n})
        rows.append({"picker": f"topaz[s={s}] score>0", "picks_per_mic": len(r["score_gt_0"]) / n})
    if "relion" in pickers and shutil.which("relion_autopick"):
        r = pick_relion_folder(folder, work / "control" / "relion", d, 0.1)
        rows.append({"picker": "relion[±0.1] adjust 0", "picks_per_mic": len(r["default"]) / n,
                     "adjust -1 per mic": len(r["curve"]) / n})
    table = pd.DataFrame(rows)
    table.to_csv(work / "control.csv", index=False)
    print(table.to_string(index=False), flush=True)
    return table


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=str(DATA))
    p.add_argument("--work", default="/tmp/pixer_real")
    p.add_argument("--datasets", nargs="+", default=list(DIAMETER_PX))
    p.add_argument("--stages", nargs="+", default=["prepare", "tune", "train", "test", "control"],
                   choices=["prepare", "tune", "train", "test", "control"])
    p.add_argument("--model", nargs="+", default=[], metavar="NAME=DIR",
                   help="pixer models to test; '{ds}' in DIR is replaced by the data set id "
                        "(e.g. ft=/tmp/pixer_real/models/ft_{ds})")
    p.add_argument("--pickers", nargs="+", default=["pixer", "topaz", "relion", "lattice"],
                   help="pixer, topaz, relion and lattice (the image-blind chance level; test stage only)")
    p.add_argument("--topaz-scales", type=int, nargs="+", default=[1, 2, 4])
    p.add_argument("--relion-windows", type=float, nargs="+", default=[0.0, 0.1, 0.2])
    p.add_argument("--ft-steps", type=int, default=300)
    p.add_argument("--ft-init", default=None, help="pixer train --init value (e.g. general)")
    p.add_argument("--edge-margin", type=float, default=0.0, metavar="FRACTION",
                   help="pixer pick --edge-margin as a fraction of the diameter (tune and test stages; default 0)")
    p.add_argument("--pixer-factors", type=float, nargs="+", default=[1.0], metavar="F",
                   help="factors on the diameter pixer is given, tuned on train+valid per model (tune stage; "
                        "the test stage uses the best; default 1: no tuning)")
    p.add_argument("--adapt", action="store_true",
                   help="test stage: also run each model that stores a background with `pixer pick --adapt` "
                        "(self-trained on the test micrographs, no labels), at the tuned factor and with the search")
    a = p.parse_args()
    work = Path(a.work)
    work.mkdir(parents=True, exist_ok=True)
    models = dict(m.split("=", 1) for m in a.model)
    tuned = json.loads((work / "tuning.json").read_text()) if (work / "tuning.json").exists() else {}
    if "prepare" in a.stages:
        prepare(Path(a.data), work, a.datasets)
    if "tune" in a.stages:
        tuned = tune(work, a.datasets, a.topaz_scales, a.relion_windows, a.pickers, models, a.pixer_factors,
                     a.edge_margin)
    if "train" in a.stages:
        train(work, a.datasets, a.ft_steps, a.ft_init)
    if "test" in a.stages:
        test(work, a.datasets, models, a.pickers, tuned, a.edge_margin, a.pixer_factors, a.adapt)
    if "control" in a.stages:
        control(work, models, a.pickers, tuned)


if __name__ == "__main__":
    main()
