"""Picking throughput of pixer on this machine (micrographs/s), 1024² and 4096² inputs.

Two measurements on simulated micrographs (2.0 Å/px, -10 dB, apoferritin, 120 Å):

1. **End to end**: ``pixer pick`` as a subprocess, into a fresh output folder each
   repeat (a rerun would skip finished micrographs), with every output format
   written. Reported: wall time of the whole command (Python start-up, torch
   import and model load included) and the in-command picking time from
   ``summary.csv`` (sum of per-micrograph seconds: read + pick + part file).
   ``--cluster none`` is passed when ``pixer pick`` has that flag (a plain loop in
   one process: what is timed is the picker, not Dask start-up).
2. **In process**: ``pixer.pick.picker.pick_image`` on micrographs already in
   memory, and the same work split into read (MRC → float32 array), preprocess
   (Fourier-crop binning + normalisation), network (tiled segmentation → stitched
   probability map) and local maximum (grid local-maximum search).

Each timing is repeated ``--repeats`` times and the lowest is kept. The 1-minute
load average is printed with every figure; ``--max-load`` waits (up to
``--wait`` s) for the load to drop first. Simulated sets and the model are made in
``--work`` when missing (model: ``pixer train`` on 8 separate micrographs,
``--train-steps`` steps), and reused afterwards.

Example::

    python bench/bench_pick.py                         # 4 x 1024², 2 x 4096², 2 repeats
    python bench/bench_pick.py --model /tmp/pbench/model --work /tmp/pbench --max-load 1.5
    python bench/bench_pick.py --sizes 1024 --n 1024=8 --repeats 3 --json pick.json
    python bench/bench_pick.py --skip-e2e --classifier pixer/models/weights/general_classifier   # its cost
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

APIX = 2.0
SNR_DB = -10.0
DIAMETER = 120.0
SEEDS = {1024: 1, 4096: 2}   # test sets; the training set uses seed 100
TRAIN_SEED = 100


# --- helpers shared with compare_peers.py --------------------------------------------------------

def pixer_cmd() -> list[str]:
    """The ``pixer`` console script of the running interpreter (falls back to PATH)."""
    exe = Path(sys.executable).parent / "pixer"
    return [str(exe)] if exe.exists() else ["pixer"]


def load1() -> float:
    """1-minute load average."""
    return os.getloadavg()[0]


def wait_for_load(max_load: float | None, wait_s: float) -> float:
    """Wait until the 1-minute load is below ``max_load`` (at most ``wait_s`` s); return the load."""
    if max_load is None:
        return load1()
    t0 = time.monotonic()
    while load1() >= max_load and time.monotonic() - t0 < wait_s:
        time.sleep(10)
    return load1()


#: CPU seconds (user + sys, the command and its children) of the last :func:`run`.
LAST_CPU_S = 0.0


def run(cmd: list[str], log: Path | None = None, cwd: str | Path | None = None, env: dict | None = None) -> float:
    """Run ``cmd``; raise with its output tail on failure; return wall seconds.

    The CPU time it used (user + sys) is left in ``LAST_CPU_S``: on a shared machine it is
    less sensitive than wall time to other load.
    """
    global LAST_CPU_S
    r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    dt = time.perf_counter() - t0
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    LAST_CPU_S = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
    if log is not None:
        log.parent.mkdir(parents=True, exist_ok=True)
        log.write_text(" ".join(map(str, cmd)) + "\n" + proc.stdout)
    if proc.returncode != 0:
        raise RuntimeError(f"command failed ({proc.returncode}): {' '.join(map(str, cmd))}\n{proc.stdout[-3000:]}")
    return dt


def pick_help() -> str:
    return subprocess.run(pixer_cmd() + ["pick", "--help"], stdout=subprocess.PIPE, text=True).stdout


def pick_flags() -> list[str]:
    """Flags that make ``pixer pick`` a single-process timing (``--cluster none`` where it exists)."""
    flags = ["--no-progress", "--device", "cpu"]
    if "--cluster" in pick_help():
        flags += ["--cluster", "none"]
    return flags


def simulate(out: Path, n: int, size: int, seed: int) -> Path:
    """``pixer simulate`` into ``out`` unless it already holds ``n`` micrographs of that seed."""
    rec = out / "simulation.json"
    if rec.exists():
        meta = json.loads(rec.read_text())
        if meta.get("n_micrographs") == n and meta.get("size_px") == size and meta.get("seed") == seed:
            return out
        shutil.rmtree(out)
    run(pixer_cmd() + ["simulate", "--out", str(out), "--n", str(n), "--size", str(size), "--apix", str(APIX),
                       "--snr-db", str(SNR_DB), "--seed", str(seed), "--no-progress"])
    return out


def ensure_model(work: Path, model: str | None, steps: int) -> Path:
    """The model to time: ``model`` if given, else ``work/model`` (trained once, then reused)."""
    if model:
        return Path(model)
    mdir = work / "model"
    if not (mdir / "config.json").exists():
        train = simulate(work / "train_1024", 8, 1024, TRAIN_SEED)
        print(f"training a model ({steps} steps) in {mdir} ...", flush=True)
        run(pixer_cmd() + ["train", "--micrographs", str(train / "micrographs.star"),
                           "--coords", str(train / "particles.star"), "--diameter", str(DIAMETER),
                           "--out", str(mdir), "--steps", str(steps), "--no-progress"])
    return mdir


def machine() -> str:
    import torch

    return (f"{platform.node()} {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
            f"torch {torch.__version__} threads={torch.get_num_threads()}")


# --- measurements --------------------------------------------------------------------------------

def end_to_end(sim: Path, model: Path, out_root: Path, repeats: int, flags: list[str],
               max_load: float | None, wait_s: float) -> dict:
    """Time ``pixer pick`` over all micrographs of ``sim``; lowest of ``repeats``."""
    import pandas as pd

    n = len(list((sim / "micrographs").glob("*.mrc")))
    best = None
    for r in range(repeats):
        out = out_root / f"rep{r}"
        shutil.rmtree(out, ignore_errors=True)
        load = wait_for_load(max_load, wait_s)
        cmd = pixer_cmd() + ["pick", "--micrographs", str(sim / "micrographs"), "--model", str(model),
                             "--diameter", str(DIAMETER), "--out", str(out)] + flags
        wall = run(cmd, log=out_root / f"rep{r}.log")
        cpu = LAST_CPU_S
        summary = pd.read_csv(out / "summary.csv")
        pick_s = float(summary["seconds"].sum())
        n_picks = int(summary["n_picks"].sum()) if "n_picks" in summary else -1
        row = {"n": n, "wall_s": wall, "cpu_s": cpu, "pick_s": pick_s, "load1": load, "n_picks": n_picks,
               "command": " ".join(cmd)}
        print(f"  e2e rep {r}: wall {wall:.2f} s (cpu {cpu:.2f} s), picking {pick_s:.2f} s, {n_picks} picks, "
              f"load {load:.2f}",
              flush=True)
        if best is None or wall < best["wall_s"]:
            best = row
    best["wall_s_per_mic"] = best["wall_s"] / n
    best["cpu_s_per_mic"] = best["cpu_s"] / n
    best["mic_per_s_wall"] = n / best["wall_s"]
    best["pick_s_per_mic"] = best["pick_s"] / n
    best["mic_per_s_pick"] = n / best["pick_s"]
    return best


def in_process(sim: Path, model_dir: Path, repeats: int, threshold: float,
               max_load: float | None, wait_s: float, classifier_dir: str | None = None) -> dict:
    """``pick_image`` and its stages on each micrograph; per-micrograph means of the lowest repeat.
    With ``classifier_dir`` also ``pick_image`` with that crop classifier filtering the candidates
    (its own rule), and how many picks it kept."""
    import numpy as np
    import torch

    from pixer.data.preprocess import prepare
    from pixer.io.micrographs import read_micrograph
    from pixer.models.store import load_model
    from pixer.pick.localmax import grid_local_maxima
    from pixer.pick.picker import PickParams, classifier_rule, model_apix, pick_image, probability_map

    model, config = load_model(str(model_dir), device="cpu")
    params = PickParams(diameter_A=DIAMETER, threshold=threshold)
    classifier, classified = None, params
    if classifier_dir:
        from dataclasses import replace

        from pixer.models.classifier import load_classifier

        classifier = load_classifier(classifier_dir, device="cpu")
        classified = replace(params, **classifier_rule(classifier[1]))
    paths = sorted((sim / "micrographs").glob("*.mrc"))

    def stages(path):
        t = [time.perf_counter()]
        mic = read_micrograph(path)
        img = np.array(mic.data, dtype=np.float32)  # force the memory-mapped read
        t.append(time.perf_counter())
        target = model_apix(config, params.diameter_A, mic.apix)
        small, apix_used = prepare(img, mic.apix, target, k=config.get("norm_k", 3.0))
        t.append(time.perf_counter())
        prob = probability_map(small, model, params.tile, params.stride, params.batch_size, "cpu")
        t.append(time.perf_counter())
        xy, _ = grid_local_maxima(prob, params.diameter_A / apix_used, grid_fraction=params.grid_fraction,
                                  min_score=params.threshold, max_picks=params.max_picks)
        t.append(time.perf_counter())
        return np.diff(t), img, mic.apix, len(xy)

    with torch.no_grad():
        stages(paths[0])  # warm-up (allocator, thread pool)
        best = None
        for r in range(repeats):
            load = wait_for_load(max_load, wait_s)
            split = np.zeros(4)
            total = with_clf = 0.0
            n_picks = n_kept = 0
            for p in paths:
                s, img, apix, k = stages(p)
                split += s
                t0 = time.perf_counter()
                picks, _, _ = pick_image(img, apix, model, config, params, device="cpu")
                total += time.perf_counter() - t0
                n_picks += len(picks)
                if classifier is not None:
                    t0 = time.perf_counter()
                    kept, _, _ = pick_image(img, apix, model, config, classified, device="cpu", classifier=classifier)
                    with_clf += time.perf_counter() - t0
                    n_kept += len(kept)
            row = {"read": split[0], "preprocess": split[1], "network": split[2], "localmax": split[3],
                   "pick_image": total, "load1": load, "n_picks": n_picks}
            if classifier is not None:
                row.update(pick_image_classified=with_clf, n_kept=n_kept)
            print(f"  in-process rep {r}: " + ", ".join(f"{k} {v:.3f}" for k, v in row.items()), flush=True)
            if best is None or row["pick_image"] < best["pick_image"]:
                best = row
    n = len(paths)
    out = {f"{k}_s_per_mic": best[k] / n for k in ("read", "preprocess", "network", "localmax", "pick_image",
                                                   "pick_image_classified") if k in best}
    out.update(n=n, load1=best["load1"], n_picks=best["n_picks"], n_kept=best.get("n_kept"),
               mic_per_s_pick_image=n / best["pick_image"],
               mic_per_s_stages=n / (best["read"] + best["preprocess"] + best["network"] + best["localmax"]))
    return out


def parse_n(items: list[str]) -> dict[int, int]:
    n = {1024: 4, 4096: 2}
    for it in items:
        size, count = it.split("=")
        n[int(size)] = int(count)
    return n


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--work", default=os.environ.get("PIXER_BENCH_WORK", "/tmp/pixer_bench"),
                   help="folder for simulated sets, model and pick outputs (default /tmp/pixer_bench)")
    p.add_argument("--model", default=None, help="pixer model folder (default: train one in --work)")
    p.add_argument("--train-steps", type=int, default=400)
    p.add_argument("--sizes", type=int, nargs="+", default=[1024, 4096])
    p.add_argument("--n", nargs="*", default=[], metavar="SIZE=N",
                   help="micrographs per size (default 1024=4 4096=2)")
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--threshold", type=float, default=0.5, help="pick_image threshold for the in-process part")
    p.add_argument("--classifier", default=None, metavar="DIR",
                   help="also time pick_image with this crop classifier (e.g. pixer/models/weights/general_classifier)")
    p.add_argument("--skip-e2e", action="store_true")
    p.add_argument("--skip-inprocess", action="store_true")
    p.add_argument("--max-load", type=float, default=None, help="wait for the 1-min load to fall below this")
    p.add_argument("--wait", type=float, default=120,
                   help="longest wait for --max-load, s; then it runs anyway (the load is recorded)")
    p.add_argument("--json", default=None, help="also write the results here")
    a = p.parse_args()

    work = Path(a.work)
    work.mkdir(parents=True, exist_ok=True)
    counts = parse_n(a.n)
    model = ensure_model(work, a.model, a.train_steps)
    flags = pick_flags()
    print(f"machine: {machine()}\nmodel: {model}\npick flags: {' '.join(flags)}\n"
          f"date: {time.strftime('%Y-%m-%d %H:%M:%S %Z')}", flush=True)
    results = {"machine": machine(), "model": str(model), "pick_flags": flags,
               "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "sizes": {}}
    for size in a.sizes:
        sim = simulate(work / f"test_{size}", counts[size], size, SEEDS.get(size, size))
        print(f"{size}²: {counts[size]} micrographs in {sim}", flush=True)
        res = {}
        if not a.skip_e2e:
            res["end_to_end"] = end_to_end(sim, model, work / f"pick_{size}", a.repeats, flags, a.max_load, a.wait)
        if not a.skip_inprocess:
            res["in_process"] = in_process(sim, model, a.repeats, a.threshold, a.max_load, a.wait, a.classifier)
        results["sizes"][size] = res

    print("\nsize   | e2e wall s/mic | e2e mic/s | e2e cpu s/mic | picking s/mic | pick_image s/mic | read | preprocess | network | localmax | load")
    for size, res in results["sizes"].items():
        e = res.get("end_to_end", {})
        i = res.get("in_process", {})
        f = lambda d, k: f"{d[k]:.3f}" if k in d else "-"  # noqa: E731
        print(f"{size:>5}² | {f(e, 'wall_s_per_mic'):>14} | {f(e, 'mic_per_s_wall'):>9} | {f(e, 'cpu_s_per_mic'):>13} | "
              f"{f(e, 'pick_s_per_mic'):>13} | "
              f"{f(i, 'pick_image_s_per_mic'):>16} | {f(i, 'read_s_per_mic')} | {f(i, 'preprocess_s_per_mic')} | "
              f"{f(i, 'network_s_per_mic')} | {f(i, 'localmax_s_per_mic')} | "
              f"{e.get('load1', i.get('load1', float('nan'))):.2f}")
    if a.classifier:
        print(f"\nwith the crop classifier {a.classifier} (pick_image, its own rule):")
        for size, res in results["sizes"].items():
            i = res.get("in_process", {})
            if "pick_image_classified_s_per_mic" in i:
                plain, clf = i["pick_image_s_per_mic"], i["pick_image_classified_s_per_mic"]
                print(f"{size:>5}²: {plain:.3f} -> {clf:.3f} s/mic (+{clf / plain - 1:.1%}); "
                      f"picks {i['n_picks']} -> {i['n_kept']}")
    if a.json:
        Path(a.json).write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
