"""pixer against RELION 3.1 LoG autopick and Topaz (pretrained resnet16): speed and accuracy.

The same simulated micrographs (2.0 Å/px, -10 dB, apoferritin ≈ 125 Å, interference on)
go through every picker, and every picker's output is scored by the same evaluator,
``pixer evaluate`` (Hungarian matching within 0.5 × 120 Å):

* **speed**: wall time of each picker's own commands on all micrographs of a set
  (pixer: ``pixer pick --cluster none``, one process; RELION: ``relion_autopick --LoG``;
  Topaz: ``topaz preprocess`` (downsampling + GMM normalisation) + ``topaz extract``),
  lowest of ``--repeats`` runs, with the 1-minute load average of each;
* **accuracy**: precision / recall / F1 at each picker's default threshold
  (pixer: ``pixer pick``'s default; RELION: ``--LoG_adjust_threshold 0``; Topaz:
  ``extract``'s default ``-t -6``, and also ``score > 0`` (p > 0.5) reported separately),
  and the best F1 and AUPRC over score thresholds from a permissive run
  (pixer ``--threshold 0.05``; RELION ``--LoG_adjust_threshold -1``;
  Topaz ``-t -6`` output as is).

Peers are installed outside the repository by ``bench/peers.sh``. A picker that is not
installed is skipped with a note. Simulated sets and the pixer model are shared with
``bench/bench_pick.py`` (``--work``, default /tmp/pixer_bench).

Example::

    bash bench/peers.sh
    python bench/compare_peers.py --max-load 1.5                  # 4 x 1024² (+ accuracy), 2 x 4096²
    python bench/compare_peers.py --pickers pixer relion --sizes 1024 --repeats 3
    python bench/compare_peers.py --topaz-n4096 1 --json peers.json
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_pick import (  # noqa: E402
    APIX, DIAMETER, SEEDS, ensure_model, machine, pick_flags, pixer_cmd, run, simulate, wait_for_load,
)
import bench_pick  # noqa: E402  (bench_pick.LAST_CPU_S: CPU seconds of the last command)

PIXER_PERMISSIVE = 0.05


def truth_subset(sim: Path, mics: list[Path], dest: Path) -> Path:
    """The set's truth STAR restricted to ``mics`` (when a picker saw only some micrographs)."""
    import starfile

    blocks = starfile.read(sim / "particles.star", always_dict=True)
    names = {m.name for m in mics}
    parts = blocks["particles"]
    blocks["particles"] = parts[parts["rlnMicrographName"].map(lambda s: Path(s).name in names)]
    dest.parent.mkdir(parents=True, exist_ok=True)
    starfile.write(blocks, dest, overwrite=True)
    return dest


def evaluate(picks: Path, sim: Path, out: Path, truth: Path | None = None) -> dict:
    """``pixer evaluate`` of ``picks`` against the set's truth (or ``truth``); the scalar metrics."""
    truth = truth or sim / "particles.star"
    run(pixer_cmd() + ["evaluate", "--picks", str(picks), "--truth", str(truth),
                       "--diameter", str(DIAMETER), "--apix", str(APIX), "--out", str(out)],
        log=out / "evaluate.log")
    m = json.loads((out / "metrics.json").read_text())
    return {k: m.get(k) for k in ("precision", "recall", "f1", "n_picks", "n_true", "threshold",
                                  "best_f1", "best_threshold", "best_precision", "best_recall", "auprc")}


def n_mics(sim: Path) -> int:
    return len(list((sim / "micrographs").glob("*.mrc")))


def timed(label: str, fn, repeats: int, max_load: float | None, wait_s: float) -> dict:
    """Run ``fn(rep) -> (wall s, cpu s)`` ``repeats`` times; keep the lowest wall, with its load."""
    best, runs = None, []
    for r in range(repeats):
        load = wait_for_load(max_load, wait_s)
        t, cpu = fn(r)
        runs.append({"seconds": t, "cpu_s": cpu, "load1": load})
        print(f"  {label} rep {r}: {t:.2f} s (cpu {cpu:.2f} s), load {load:.2f}", flush=True)
        if best is None or t < best["seconds"]:
            best = {"seconds": t, "cpu_s": cpu, "load1": load, "rep": r}
    best["runs"] = runs
    return best


# --- pixer ---------------------------------------------------------------------------------------

def run_pixer(sim: Path, out: Path, model: Path, a) -> dict:
    flags = pick_flags()

    def cmd(dest: Path, extra: list[str]) -> list[str]:
        return pixer_cmd() + ["pick", "--micrographs", str(sim / "micrographs"), "--model", str(model),
                              "--diameter", str(DIAMETER), "--out", str(dest)] + flags + extra

    def once(r: int) -> float:
        dest = out / f"default_rep{r}"
        shutil.rmtree(dest, ignore_errors=True)  # a rerun would skip finished micrographs
        return run(cmd(dest, []), log=out / f"default_rep{r}.log"), bench_pick.LAST_CPU_S

    t = timed("pixer", once, a.repeats, a.max_load, a.wait)
    res = {"time": t, "command": " ".join(cmd(out / "default_rep0", []))}
    res["default"] = evaluate(out / f"default_rep{t['rep']}", sim, out / "eval_default")
    perm = out / "permissive"
    shutil.rmtree(perm, ignore_errors=True)
    run(cmd(perm, ["--threshold", str(PIXER_PERMISSIVE)]), log=out / "permissive.log")
    res["curve"] = evaluate(perm, sim, out / "eval_permissive")
    res["curve_command"] = " ".join(cmd(perm, ["--threshold", str(PIXER_PERMISSIVE)]))
    return res


# --- RELION LoG ----------------------------------------------------------------------------------

def relion_star(sim: Path, dest: Path) -> Path:
    """A RELION 3.1 micrographs STAR (optics + micrographs) for ``sim``.

    ``pixer simulate``'s own ``micrographs.star`` is used when it has the optics block
    RELION 3.1 needs; otherwise one is written next to the outputs (absolute paths).
    """
    own = sim / "micrographs.star"
    if own.exists() and "data_optics" in own.read_text() and "_rlnMicrographPixelSize" in own.read_text():
        return own
    dest.mkdir(parents=True, exist_ok=True)
    star = dest / "micrographs.star"
    lines = ["# version 30001", "", "data_optics", "", "loop_", "_rlnOpticsGroup #1", "_rlnOpticsGroupName #2",
             "_rlnMicrographPixelSize #3", "_rlnVoltage #4", "_rlnSphericalAberration #5",
             "_rlnAmplitudeContrast #6", f"1 opticsGroup1 {APIX} 300 2.7 0.1", "", "# version 30001", "",
             "data_micrographs", "", "loop_", "_rlnMicrographName #1", "_rlnOpticsGroup #2"]
    lines += [f"{p.resolve()} 1" for p in sorted((sim / "micrographs").glob("*.mrc"))]
    star.write_text("\n".join(lines) + "\n")
    return star


def run_relion(sim: Path, out: Path, a) -> dict:
    exe = shutil.which("relion_autopick")
    if exe is None:
        return {"skipped": "relion_autopick not on PATH (bash bench/peers.sh relion)"}
    star = relion_star(sim, out)

    def cmd(dest: Path, adjust: float) -> list[str]:
        return [exe, "--i", str(star.name if star.parent == sim else star), "--odir", str(dest.resolve()) + "/",
                "--pickname", "autopick", "--LoG", "--LoG_diam_min", str(a.relion_diam[0]),
                "--LoG_diam_max", str(a.relion_diam[1]), "--shrink", "0", "--lowpass", "20",
                "--angpix", str(APIX), "--LoG_adjust_threshold", str(adjust)]

    def once(r: int) -> float:
        dest = out / f"default_rep{r}"
        shutil.rmtree(dest, ignore_errors=True)
        return run(cmd(dest, 0.0), cwd=sim, log=out / f"default_rep{r}.log"), bench_pick.LAST_CPU_S

    t = timed("relion", once, a.repeats, a.max_load, a.wait)
    res = {"time": t, "command": f"cd {sim} && " + " ".join(cmd(out / "default_rep0", 0.0))}
    res["default"] = evaluate(out / f"default_rep{t['rep']}" / "micrographs", sim, out / "eval_default")
    perm = out / "permissive"
    shutil.rmtree(perm, ignore_errors=True)
    run(cmd(perm, a.relion_permissive), cwd=sim, log=out / "permissive.log")
    res["curve"] = evaluate(perm / "micrographs", sim, out / "eval_permissive")
    res["curve_command"] = f"cd {sim} && " + " ".join(cmd(perm, a.relion_permissive))
    return res


# --- Topaz ---------------------------------------------------------------------------------------

def run_topaz(sim: Path, out: Path, a, size: int) -> dict:
    py = Path(a.topaz_venv) / "bin" / "python"
    if not py.exists():
        return {"skipped": f"{py} missing (bash bench/peers.sh topaz)"}
    chk = subprocess.run([str(py), "-c", "import topaz, os, glob; d = os.path.dirname(topaz.__file__); "
                          "print(len(glob.glob(os.path.join(d, 'pretrained', 'detector', 'resnet16_u64.sav'))))"],
                         stdout=subprocess.PIPE, text=True)
    if chk.stdout.strip() != "1":
        return {"skipped": "topaz pretrained resnet16 weights are not in the installed package"}
    scale = a.topaz_scale
    radius = max(1, int(round(DIAMETER / 2 / (APIX * scale))))
    mics = sorted((sim / "micrographs").glob("*.mrc"))
    n_use = a.topaz_n4096 if size >= 4096 and a.topaz_n4096 else len(mics)
    mics = mics[:n_use]
    patch = ["-p", str(a.topaz_patch)] if size // scale > a.topaz_patch else []
    env = dict(os.environ, OMP_NUM_THREADS=str(os.cpu_count()))

    def cmds(dest: Path) -> tuple[list[str], list[str]]:
        pre = [str(py), "-m", "topaz.commands.preprocess", "-s", str(scale), "-o", str(dest / "pre") + "/"] + \
              [str(m) for m in mics]
        ext = [str(py), "-m", "topaz.commands.extract", "-m", "resnet16", "-r", str(radius), "-x", str(scale)] + \
              patch + ["-o", str(dest / "picks_topaz.txt")] + [str(dest / "pre" / m.name) for m in mics]
        return pre, ext

    split = {}

    def once(r: int) -> float:
        dest = out / f"default_rep{r}"
        shutil.rmtree(dest, ignore_errors=True)
        dest.mkdir(parents=True)
        pre, ext = cmds(dest)
        t_pre = run(pre, log=dest / "preprocess.log", env=env)
        c_pre = bench_pick.LAST_CPU_S
        t_ext = run(ext, log=dest / "extract.log", env=env)
        c_ext = bench_pick.LAST_CPU_S
        split[r] = (t_pre, t_ext)
        print(f"    topaz preprocess {t_pre:.1f} s (cpu {c_pre:.1f}), extract {t_ext:.1f} s (cpu {c_ext:.1f})",
              flush=True)
        return t_pre + t_ext, c_pre + c_ext

    t = timed("topaz", once, a.topaz_repeats if a.topaz_repeats else a.repeats, a.max_load, a.wait)
    t["preprocess_s"], t["extract_s"] = split[t["rep"]]
    pre, ext = cmds(out / "default_rep0")
    res = {"time": t, "n": len(mics), "command": " ".join(pre) + " && " + " ".join(ext),
           "scale": scale, "radius_px_downsampled": radius}
    picks = out / f"default_rep{t['rep']}" / "picks_topaz.txt"
    truth = None
    if len(mics) < n_mics(sim):
        truth = truth_subset(sim, mics, out / "truth_subset.star")
    res["default"] = evaluate(picks, sim, out / "eval_default", truth)   # extract's default -t -6
    res["curve"] = res["default"]
    # the usual hand-chosen cut: log-likelihood ratio > 0 (p > 0.5)
    table = pd.read_csv(picks, sep="\t")
    t0 = out / "picks_topaz_t0.txt"
    table[table["score"] > 0].to_csv(t0, sep="\t", index=False)
    res["score_gt_0"] = evaluate(t0, sim, out / "eval_t0", truth)
    return res


# --- report --------------------------------------------------------------------------------------

def fmt(x, nd=3):
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{nd}f}"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--work", default=os.environ.get("PIXER_BENCH_WORK", "/tmp/pixer_bench"))
    p.add_argument("--model", default=None, help="pixer model folder (default: train one in --work)")
    p.add_argument("--train-steps", type=int, default=400)
    p.add_argument("--pickers", nargs="+", default=["pixer", "relion", "topaz"],
                   choices=["pixer", "relion", "topaz"])
    p.add_argument("--sizes", type=int, nargs="+", default=[1024, 4096])
    p.add_argument("--n1024", type=int, default=4)
    p.add_argument("--n4096", type=int, default=2)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--relion-diam", type=float, nargs=2, default=[110.0, 130.0], metavar=("MIN", "MAX"),
                   help="--LoG_diam_min / --LoG_diam_max in Å (default 110 130: best F1 on the training set)")
    p.add_argument("--relion-permissive", type=float, default=-1.0,
                   help="--LoG_adjust_threshold of the run scored for best F1 / AUPRC (default -1)")
    p.add_argument("--topaz-venv", default=os.environ.get("TOPAZ_VENV", "/work/topaz-venv"))
    p.add_argument("--topaz-scale", type=int, default=2,
                   help="topaz preprocess -s (default 2: 2 → 4 Å/px, best on the training set; 4 was worse)")
    p.add_argument("--topaz-patch", type=int, default=512, help="extract -p when the downsampled image is larger")
    p.add_argument("--topaz-n4096", type=int, default=1, help="4096² micrographs given to Topaz (slow)")
    p.add_argument("--topaz-repeats", type=int, default=0, help="repeats for Topaz (default: --repeats)")
    p.add_argument("--max-load", type=float, default=None, help="wait for the 1-min load to fall below this")
    p.add_argument("--wait", type=float, default=120,
                   help="longest wait for --max-load, s; then it runs anyway (the load is recorded)")
    p.add_argument("--json", default=None)
    a = p.parse_args()

    work = Path(a.work)
    work.mkdir(parents=True, exist_ok=True)
    model = ensure_model(work, a.model, a.train_steps) if "pixer" in a.pickers else None
    date = time.strftime("%Y-%m-%d %H:%M:%S %Z")
    print(f"machine: {machine()}\ndate: {date}", flush=True)
    results = {"machine": machine(), "date": date, "model": str(model), "runs": {}}
    for size in a.sizes:
        n = a.n1024 if size == 1024 else a.n4096 if size == 4096 else 2
        sim = simulate(work / f"test_{size}", n, size, SEEDS.get(size, size))
        for picker in a.pickers:
            print(f"{picker} on {size}² ({sim})", flush=True)
            out = work / "peers" / f"{picker}_{size}"
            out.mkdir(parents=True, exist_ok=True)
            if picker == "pixer":
                res = run_pixer(sim, out, model, a)
            elif picker == "relion":
                res = run_relion(sim, out, a)
            else:
                res = run_topaz(sim, out, a, size)
            res.setdefault("n", n)
            if "time" in res:
                res["cpu_s_per_mic"] = res["time"]["cpu_s"] / res["n"]
                res["s_per_mic"] = res["time"]["seconds"] / res["n"]
                res["mic_per_s"] = res["n"] / res["time"]["seconds"]
            results["runs"][f"{picker}_{size}"] = res
            if a.json:
                Path(a.json).write_text(json.dumps(results, indent=2, default=str) + "\n")

    print(f"\n{'picker':<8} {'size':>5} {'n':>2} {'s/mic':>8} {'mic/s':>8} {'cpu/mic':>8} {'load':>5} | "
          f"{'P':>5} {'R':>5} {'F1':>5} (default) | {'bestF1':>6} {'AUPRC':>6}")
    for key, r in results["runs"].items():
        picker, size = key.split("_")
        if "skipped" in r:
            print(f"{picker:<8} {size:>5}  skipped: {r['skipped']}")
            continue
        d, c = r["default"], r["curve"]
        print(f"{picker:<8} {size:>5} {r['n']:>2} {fmt(r['s_per_mic'], 2):>8} {fmt(r['mic_per_s'], 3):>8} "
              f"{fmt(r['cpu_s_per_mic'], 2):>8} "
              f"{fmt(r['time']['load1'], 2):>5} | {fmt(d['precision'])} {fmt(d['recall'])} {fmt(d['f1'])}"
              f"           | {fmt(c['best_f1']):>6} {fmt(c['auprc']):>6}")
        if "score_gt_0" in r:
            s = r["score_gt_0"]
            print(f"{'':<8} {'':>5} {'':>2} {'':>8} {'':>8} {'':>8} {'':>5} | {fmt(s['precision'])} {fmt(s['recall'])} "
                  f"{fmt(s['f1'])} (topaz score > 0)")
    if a.json:
        Path(a.json).write_text(json.dumps(results, indent=2, default=str) + "\n")


if __name__ == "__main__":
    main()


# --- `pixer benchmark --peers relion,topaz` (docs/benchmark.md): pick_<peer>(micrographs, out, *, diameter_A, apix)
# implemented in bench/eval_real.py (PNG/TIFF/MRC in, RELION LoG / Topaz resnet16 picks out)
from eval_real import pick_relion, pick_topaz  # noqa: E402,F401
