"""Train pixer's general model on a reproducible simulated mix and (optionally) install it.

The general model is the segmentation net that ``pixer pick`` uses when no
``--model`` is given (``pixer/models/weights/general/``). It is trained on
pixer's own simulator only, so this script regenerates everything from the
repository alone (no downloaded structures):

* specimens: the three built-in demos (``apoferritin`` 24-mer shell ~120 Å,
  ``small`` two-domain ~60 Å, ``ribosome`` ~250 Å) plus three pseudo-atomic
  shapes built here with :func:`pixer.simulate.density.density_from_atoms`
  (``globule`` ~45 Å, i.e. ~40 kDa; ``rod`` ~160 x 50 Å; ``ring`` toroid ~150 Å,
  proteasome/GroEL-like top views);
* per subset (fixed seed): SNR uniform in [-20, -3] dB (``--snr-range``; the shipped model
  [-26, -3]), pixel size between
  the particle spanning ~26 and ~110 px, defocus window inside 0.5-4 µm,
  amplitude contrast 0.07-0.15, crowding 5-45 % of the area, interference
  (carbon 0-0.7, contaminants 0-2.5, aggregates 0-3 per micrograph, ice gradient)
  or none;
* crowded subsets (8 x scale): particles packed 0.8-0.95 diameters apart over
  55-80 % of the area, as on EMPIAR-10059/10947, and empty subsets (4 x scale x ``--empties``):
  no particles, heavy carbon / contaminants / aggregates (negatives);
* per micrograph (fixed seed) augmentations the simulator lacks: coloured
  (1/f^a) noise added on top of its white noise, a B-factor-like blur, and
  8-bit quantisation after a percentile clip, with 10-255 grey levels in use
  (PNG exports such as CryoPPP's use as few as ~10).

Every micrograph is binned so the particle spans ``particle_px`` (24) px, as
``pixer train`` / ``pixer pick`` do, and labelled with discs of 0.6 x the
particle radius. Training uses :func:`pixer.train.segmentation.train_segmentation`
(AdamW, warm-up + cosine), on CUDA when available, else the CPU.

Usage (from the repository root; ``--install`` copies model.pt + config.json
into ``pixer/models/weights/general/``)::

    python bench/train_general.py --work /tmp/pixer_general_work --scale 3 --steps 8000 \
        --snr-range -26 -3 --empties 3 --max-picks-per-empty 0.5 --install         # the shipped model
    python bench/train_general.py --work /tmp/g --scale 0.1 --steps 20    # a smoke run
    python bench/train_general.py --work /tmp/pixer_general_work --evaluate-only     # the F1 table in docs/general_model.md
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing
import os
import shutil
import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from pixer.data.preprocess import prepare
from pixer.io.coords import read_picks
from pixer.io.micrographs import read_micrograph
from pixer.io.mrc_write import write_mrc
from pixer.labels.discs import disc_labels_for_picks
from pixer.simulate.dataset import simulate_dataset
from pixer.simulate.density import density_from_atoms
from pixer.train.prepare import target_apix
from pixer.train.segmentation import TrainConfig, train_segmentation

PARTICLE_PX = 24.0
LABEL_FRACTION = 0.6
DEMOS = ("apoferritin", "small", "ribosome")
EXTRA = ("globule", "rod", "ring")
#: SNR range (dB) the subsets draw from, uniformly (``--snr-range``).
SNR_RANGE_DB = (-20.0, -3.0)
BINNED_PX = 320  # edge of a training micrograph after binning (px)
#: Rough particle diameters (Å) used to plan pixel sizes and packing (the simulator measures the real ones).
NOMINAL_DIAMETER_A = {"apoferritin": 125.0, "small": 62.0, "ribosome": 255.0, "globule": 46.0, "rod": 165.0,
                      "ring": 150.0}


# ------------------------------------------------------------------ extra shapes

def _ball(rng, n, radii):
    p = rng.normal(size=(n, 3))
    p /= np.linalg.norm(p, axis=1, keepdims=True)
    return p * rng.random((n, 1)) ** (1 / 3) * np.asarray(radii, dtype=float)


def extra_shape(kind: str, apix: float) -> np.ndarray:
    """Pseudo-atomic maps not among the built-in demos (deterministic)."""
    rng = np.random.default_rng({"globule": 11, "rod": 12, "ring": 13}[kind])
    if kind == "globule":  # ~40 kDa: a 45 Å globule with a small lobe
        pts = np.concatenate([_ball(rng, 900, (19.0, 17.0, 16.0)), _ball(rng, 200, (8.0, 8.0, 8.0)) + [14.0, 6.0, 4.0]])
    elif kind == "rod":  # elongated ~160 x 50 Å, slightly bent, three segments
        segs = [_ball(rng, 3000, (24.0, 22.0, 30.0)) + [0.0, 0.0, z] + [0.08 * z, 0, 0] for z in (-52.0, 0.0, 52.0)]
        pts = np.concatenate(segs)
    elif kind == "ring":  # toroid: 7 lobes on a 55 Å radius, two stacked rings (proteasome-like)
        lobes = []
        for layer in (-18.0, 18.0):
            for k in range(7):
                a = 2 * math.pi * k / 7 + (0.2 if layer > 0 else 0.0)
                lobes.append(_ball(rng, 700, (17.0, 17.0, 16.0)) + [55 * math.cos(a), 55 * math.sin(a), layer])
        pts = np.concatenate(lobes)
    else:
        raise ValueError(kind)
    return density_from_atoms(pts, None, apix)


# ------------------------------------------------------------------ the mix

def _draw_geometry(rng: np.random.Generator, kind: str, max_px: float) -> tuple[float, int]:
    """Pixel size (particle spanning 26..max_px raw px, 0.8-6 Å/px) and a micrograph size that is
    ~BINNED_PX px after binning to PARTICLE_PX; one draw."""
    d = NOMINAL_DIAMETER_A[kind]
    apix = float(np.clip(d / float(np.exp(rng.uniform(np.log(26), np.log(max_px)))), 0.8, 6.0))
    size = int(min(1536, max(256, round(BINNED_PX * max(1.0, (d / PARTICLE_PX) / apix) / 16) * 16)))
    return apix, size


def _draw_defocus(rng: np.random.Generator) -> tuple[int, int]:
    """A defocus window (Å) of 3000-15000 Å starting at 5000-25000 Å; two draws."""
    lo = float(rng.uniform(5000, 25000))
    hi = float(min(40000, lo + rng.uniform(3000, 15000)))
    return round(lo), round(hi)


def _subset(rng: np.random.Generator, name: str, kind: str, apix: float, size: int, defocus: tuple[int, int],
            seed: int, particles: int, interference, n: int = 2, snr_range: tuple[float, float] = SNR_RANGE_DB,
            **extra) -> dict:
    """One subset's simulate_dataset arguments (draws SNR uniformly in ``snr_range`` dB, then amplitude contrast)."""
    snr = round(float(rng.uniform(*snr_range)), 2)
    return dict(name=name, kind=kind, n=n, size=size, apix=round(apix, 3), snr_db=snr, seed=seed,
                particles=particles, defocus_range=defocus, amp_contrast=round(float(rng.uniform(0.07, 0.15)), 3),
                interference=interference, **extra)


def _with_debris(interference, rng: np.random.Generator, debris: float, heavy: bool = False):
    """``interference`` with small dark debris added (the simulator's ``interference["debris"]``):
    a Poisson mean drawn uniformly in [0, 2] x ``debris`` ([1, 3] x for junk-only micrographs) from
    ``rng``, a stream of its own, so the rest of the mix is the same with or without it."""
    if debris <= 0 or interference is False:
        return interference
    lo, hi = (1.0, 3.0) if heavy else (0.0, 2.0)
    return {**interference, "debris": round(float(rng.uniform(lo, hi)) * debris, 3)}


def plan(scale: float, seed: int = 20260, snr_range: tuple[float, float] = SNR_RANGE_DB,
         empties: float = 1.0, on_carbon: float = 0.0, debris: float = 0.0) -> list[dict]:
    """The training subsets: one dict of simulate_dataset arguments + augmentation per subset.
    ``on_carbon`` > 0: in that fraction of the micrographs with carbon, particles sit on it too
    (the simulator's ``interference["on_carbon"]``; no random draws here, so the mix is otherwise the same).
    ``debris`` > 0: small dark debris in every micrograph with interference (:func:`_with_debris`)."""
    rng = np.random.default_rng(seed)
    rng_debris = np.random.default_rng(seed + 2)
    kinds = DEMOS * 3 + EXTRA * 2  # demos weighted a little more
    n_subsets = max(len(kinds), int(round(48 * scale)))
    subsets = []
    for i in range(n_subsets):
        kind = kinds[i % len(kinds)]
        d = NOMINAL_DIAMETER_A[kind]
        apix, size = _draw_geometry(rng, kind, 110)  # the binning factor varies
        defocus = _draw_defocus(rng)
        fill = float(rng.uniform(0.05, 0.45))
        ppm = max(1, int(fill * size * size / (math.pi * (d / apix / 2) ** 2)))
        if rng.random() < 0.15:
            interference = False
        else:
            interference = dict(carbon=float(rng.uniform(0, 0.7)), ice_gradient=1.0,
                                contaminants=float(rng.uniform(0, 2.5)), aggregates=float(rng.uniform(0, 3)))
            if on_carbon > 0:
                interference["on_carbon"] = on_carbon
        interference = _with_debris(interference, rng_debris, debris)
        subsets.append(_subset(rng, f"s{i:03d}_{kind}", kind, apix, size, defocus, 1000 + i, ppm, interference,
                               snr_range=snr_range))
    # Crowded grids (EMPIAR-10059/10947 cover ~60 % of the area with touching particles) and empty
    # micrographs full of junk (negatives): a separate stream, so the subsets above stay as they were.
    rng2 = np.random.default_rng(seed + 1)
    n_dense, n_empty = max(2, int(round(8 * scale))), max(1, int(round(4 * scale * empties)))
    for i in range(n_dense + n_empty):
        dense = i < n_dense
        kind = kinds[i % len(kinds)]
        d = NOMINAL_DIAMETER_A[kind]
        apix, size = _draw_geometry(rng2, kind, 80)
        defocus = _draw_defocus(rng2)
        spacing = float(rng2.uniform(0.8, 0.95))
        ppm = int(rng2.uniform(0.55, 0.8) * size * size / (math.pi * (spacing * d / apix / 2) ** 2)) if dense else 0
        interference = (dict(carbon=float(rng2.uniform(0, 0.3)), ice_gradient=1.0,
                             contaminants=float(rng2.uniform(0, 1.5)), aggregates=float(rng2.uniform(0, 1)))
                        if dense else
                        dict(carbon=float(rng2.uniform(0.3, 1.0)), ice_gradient=1.0,
                             contaminants=float(rng2.uniform(1, 4)), aggregates=float(rng2.uniform(1, 4))))
        if dense and on_carbon > 0:
            interference["on_carbon"] = on_carbon
        interference = _with_debris(interference, rng_debris, debris, heavy=not dense)
        subsets.append(_subset(rng2, f"{'d' if dense else 'e'}{i:03d}_{kind}", kind, apix, size, defocus, 5000 + i,
                               ppm, interference, snr_range=snr_range,
                               min_distance_fraction=round(spacing, 3) if dense else None))
    return subsets


def plan_calibration(n: int = 8, seed: int = 90210, snr_range: tuple[float, float] = SNR_RANGE_DB,
                     debris: float = 0.0) -> list[dict]:
    """Fresh empty micrographs (never trained on) with heavy junk, for the pick threshold."""
    rng = np.random.default_rng(seed)
    rng_debris = np.random.default_rng(seed + 2)
    kinds = DEMOS + EXTRA
    subsets = []
    for i in range(n):
        kind = kinds[i % len(kinds)]
        apix, size = _draw_geometry(rng, kind, 110)
        defocus = _draw_defocus(rng)
        interference = dict(carbon=float(rng.uniform(0.2, 1.0)), ice_gradient=1.0,
                            contaminants=float(rng.uniform(0.5, 4)), aggregates=float(rng.uniform(0.5, 4)))
        interference = _with_debris(interference, rng_debris, debris, heavy=True)
        subsets.append(_subset(rng, f"c{i:03d}_{kind}", kind, apix, size, defocus, 9000 + i, 0, interference, n=1,
                               snr_range=snr_range))
    return subsets


def _simulate_one(out: Path, s: dict, kw: dict, threads: int | None = None) -> None:
    if threads:
        torch.set_num_threads(threads)
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    simulate_dataset(tmp, n=s["n"], size=s["size"], apix=s["apix"], snr_db=s["snr_db"], seed=s["seed"],
                     particles_per_micrograph=s["particles"], interference=s["interference"], progress=False,
                     defocus_range=tuple(s["defocus_range"]), amp_contrast=s["amp_contrast"], **kw)
    tmp.rename(out)


def install_weights(src: Path, names: tuple[str, ...], folder: str) -> Path:
    """Copy ``names`` from ``src`` into ``pixer/models/weights/<folder>/`` (where pixer finds its shipped weights)."""
    dest = REPO / "pixer" / "models" / "weights" / folder
    dest.mkdir(parents=True, exist_ok=True)
    for f in names:
        shutil.copy2(src / f, dest / f)
    print(f"installed into {dest}", flush=True)
    return dest


def simulate_all(work: Path, subsets: list[dict], jobs: int = 1) -> None:
    """Simulate the subsets not done yet; ``jobs`` > 1: that many processes of one torch thread each."""
    maps = work / "maps"
    todo = []
    for s in subsets:
        out = work / "sim" / s["name"]
        if (out / "simulation.json").is_file():
            continue
        kw = {}
        if s["kind"] in EXTRA:
            mp = maps / f"{s['kind']}_{s['apix']:.3f}.mrc"
            if not mp.is_file():  # written here, before any worker reads it
                write_mrc(mp, extra_shape(s["kind"], s["apix"]), s["apix"])
            kw["map_path"] = mp
        else:
            kw["demo"] = s["kind"]
        if s.get("min_distance_fraction"):
            kw["min_distance_A"] = s["min_distance_fraction"] * NOMINAL_DIAMETER_A[s["kind"]]
        todo.append((out, s, kw))
    if jobs <= 1 or len(todo) <= 1:
        for out, s, kw in todo:
            _simulate_one(out, s, kw)
        return
    # spawn, not fork: the parent has started torch's thread pool
    with ProcessPoolExecutor(min(jobs, len(todo)), mp_context=multiprocessing.get_context("spawn")) as pool:
        for f in [pool.submit(_simulate_one, out, s, kw, 1) for out, s, kw in todo]:
            f.result()


def _augment(img: np.ndarray, rng: np.random.Generator, apix: float) -> np.ndarray:
    """Coloured noise, blur and 8-bit quantisation (each applied at random)."""
    img = img.astype(np.float64)
    h, w = img.shape
    sigma = float(np.std(img))
    fy = np.fft.fftfreq(h)[:, None] / apix
    fx = np.fft.rfftfreq(w)[None, :] / apix
    f = np.sqrt(fy**2 + fx**2)
    if rng.random() < 0.6:  # 1/f^a noise on top of the white noise
        a = rng.uniform(0.5, 2.0)
        shaped = np.fft.irfft2(np.fft.rfft2(rng.standard_normal((h, w))) / np.maximum(f, 1 / (h * apix)) ** (a / 2),
                               s=(h, w))
        img = img + rng.uniform(0.2, 1.2) * sigma * shaped / (shaped.std() + 1e-12)
    if rng.random() < 0.3:  # B-factor-like blur of everything (detector MTF, drift)
        b = rng.uniform(50, 400)
        img = np.fft.irfft2(np.fft.rfft2(img) * np.exp(-b * f**2 / 4), s=(h, w))
    if rng.random() < 0.4:  # 8-bit export after a percentile clip, often with few grey levels in use
        lo, hi = np.percentile(img, [rng.uniform(0, 2), rng.uniform(98, 100)])
        levels = float(np.exp(rng.uniform(np.log(10), np.log(255))))
        img = np.round(np.clip((img - lo) / max(hi - lo, 1e-12), 0, 1) * levels)
    return img.astype(np.float32)


def build_samples(work: Path, subsets: list[dict], size_jitter: tuple[float, float] = (1.0, 1.0)) -> tuple[list, list]:
    """Binned, normalised, augmented micrographs and their disc labels.

    ``size_jitter`` ``(lo, hi)``: each micrograph is binned so the particle spans ``PARTICLE_PX``
    times a log-uniform draw from ``[lo, hi]`` (seeded per micrograph) instead of exactly
    ``PARTICLE_PX``: a model that has seen particles a little smaller and larger than the nominal
    size copes with a diameter given too large or too small (real masks are often generous).
    """
    samples, rows = [], []
    for k, s in enumerate(subsets):
        out = work / "sim" / s["name"]
        info = json.loads((out / "simulation.json").read_text())
        d = float(info["particle_diameter_A"])
        picks = read_picks([str(out / "particles.star")]) if info["n_particles"] else None  # None: empty subset
        for j, mic_path in enumerate(sorted((out / "micrographs").glob("*.mrc"))):
            mic = read_micrograph(mic_path)
            rng = np.random.default_rng([7, k, j])
            data = _augment(mic.data, rng, s["apix"])
            jitter = float(np.exp(np.random.default_rng([8, k, j]).uniform(*np.log(size_jitter))))
            image, used = prepare(data, s["apix"], target_apix(s["apix"], d, PARTICLE_PX * jitter))
            rel = f"micrographs/{mic_path.name}"
            label = (np.zeros(image.shape, np.uint8) if picks is None else
                     disc_labels_for_picks(picks, rel, image.shape, used, d, fraction=LABEL_FRACTION,
                                           mic_apix=s["apix"]))
            samples.append((image.astype(np.float32), label))
            rows.append(dict(subset=s["name"], micrograph=mic_path.name, diameter_A=round(d, 1), jitter=round(jitter, 3),
                             binned_shape=list(image.shape), n_label_px=int(label.sum())))
    return samples, rows


# ------------------------------------------------------------------ evaluation

EVAL_KINDS = {"apoferritin": (2.0, 1024), "small": (1.2, 1024), "ribosome": (4.0, 1024)}


def evaluate(work: Path, model: str | None, snrs=(-5, -10, -15, -20), n: int = 3, seed: int = 777) -> list[dict]:
    """F1 of ``pixer pick`` (general model unless ``model``) on fresh simulated sets (seed not in training)."""
    rows = []
    for kind, (apix, size) in EVAL_KINDS.items():
        for snr in snrs:
            sim = work / "eval" / f"{kind}_{-snr}dB"
            if not (sim / "simulation.json").is_file():
                subprocess.run([sys.executable, "-m", "pixer.cli.main", "simulate", "--out", str(sim), "--n", str(n),
                                "--size", str(size), "--apix", str(apix), "--snr-db", str(snr), "--seed", str(seed),
                                "--demo", kind, "--no-progress"], check=True, stdout=subprocess.DEVNULL)
            d = json.loads((sim / "simulation.json").read_text())["particle_diameter_A"]
            picks = work / "eval" / f"{kind}_{-snr}dB_picks"
            shutil.rmtree(picks, ignore_errors=True)
            cmd = [sys.executable, "-m", "pixer.cli.main", "pick", "--micrographs", str(sim / "micrographs"),
                   "--diameter", str(d), "--out", str(picks), "--cluster", "none", "--no-progress"]
            if model:
                cmd += ["--model", model]
            subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
            ev = work / "eval" / f"{kind}_{-snr}dB_eval"
            subprocess.run([sys.executable, "-m", "pixer.cli.main", "evaluate", "--picks", str(picks), "--truth",
                            str(sim / "particles.star"), "--diameter", str(d), "--out", str(ev)],
                           check=True, stdout=subprocess.DEVNULL)
            m = json.loads((ev / "metrics.json").read_text())
            row = dict(kind=kind, snr_db=snr, apix=apix, diameter_A=d,
                       **{k: round(float(m[k]), 3) for k in ("precision", "recall", "f1") if k in m})
            print(json.dumps(row), flush=True)
            rows.append(row)
    return rows


# ------------------------------------------------------------------ main

def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--work", default="/tmp/pixer_general_work", help="working folder (simulations, model, logs)")
    p.add_argument("--scale", type=float, default=1.5, help="size knob: number of subsets = 48 x scale (2 mics each)")
    p.add_argument("--steps", type=int, default=1000)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--tile", type=int, default=128)
    p.add_argument("--width", type=int, default=32)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto", help="auto: cuda when available, else cpu")
    p.add_argument("--size-jitter", type=float, nargs=2, default=[1.0, 1.0], metavar=("LO", "HI"),
                   help="particle size after binning: PARTICLE_PX x a log-uniform draw in [LO, HI] per "
                        "micrograph (default 1 1: exactly PARTICLE_PX)")
    p.add_argument("--snr-range", type=float, nargs=2, default=list(SNR_RANGE_DB), metavar=("LO", "HI"),
                   help="SNR range (dB) of the training subsets, drawn uniformly (default -20 -3)")
    p.add_argument("--empties", type=float, default=1.0,
                   help="factor on the number of empty (junk-only) subsets, 4 x scale by default")
    p.add_argument("--on-carbon", type=float, default=0.0, metavar="P",
                   help="probability that particles also sit on the carbon film of a micrograph with carbon "
                        "(default 0: particles keep off all junk)")
    p.add_argument("--debris", type=float, default=0.0, metavar="MEAN",
                   help="small dark debris (specks, strands) per micrograph with interference: a Poisson mean "
                        "drawn in [0, 2] x MEAN ([1, 3] x on junk-only micrographs); default 0")
    p.add_argument("--max-picks-per-empty", type=float, default=1.0,
                   help="the own threshold leaves at most this many picks per empty calibration micrograph")
    p.add_argument("--jobs", type=int, default=os.cpu_count() or 1,
                   help="simulation processes (default: one per CPU core; 1: serial)")
    p.add_argument("--install", action="store_true", help="copy the model into pixer/models/weights/general/")
    p.add_argument("--evaluate", action="store_true", help="after training, the F1 table on fresh simulated sets")
    p.add_argument("--evaluate-only", action="store_true", help="only the F1 table (installed general model)")
    args = p.parse_args(argv)
    work = Path(args.work).resolve()
    work.mkdir(parents=True, exist_ok=True)
    if args.evaluate_only:
        rows = evaluate(work, None)
        (work / "eval_general.json").write_text(json.dumps(rows, indent=2) + "\n")
        return 0
    device = ("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device
    t0 = time.perf_counter()
    snr_range = tuple(args.snr_range)
    subsets = plan(args.scale, snr_range=snr_range, empties=args.empties, on_carbon=args.on_carbon,
                   debris=args.debris)
    (work / "mix.json").write_text(json.dumps(subsets, indent=1) + "\n")
    simulate_all(work, subsets, args.jobs)
    t_sim = time.perf_counter() - t0
    samples, rows = build_samples(work, subsets, tuple(args.size_jitter))
    t_prep = time.perf_counter() - t0 - t_sim
    print(f"simulated {len(subsets)} subsets in {t_sim:.0f} s, prepared {len(samples)} micrographs in {t_prep:.0f} s",
          flush=True)
    diams = [r["diameter_A"] for r in rows]
    config = TrainConfig(
        tile=args.tile, batch_size=args.batch_size, steps=args.steps, lr=args.lr, width=args.width, n_branches=4,
        seed=args.seed, device=device, apix=None, diameter_A=(min(diams), max(diams)), particle_px=PARTICLE_PX,
        eval_every=max(1, min(100, args.steps // 10)), stride=args.tile // 2, val_fraction=0.1, val_tiles=64,
        checkpoint_every=100, max_picks_per_empty=args.max_picks_per_empty,
    )
    # The pick threshold (config.json["pick_threshold"], written by train_segmentation): F1-optimal on
    # the held-out validation micrographs, raised until fresh empty micrographs full of junk (never
    # trained on) keep at most one pick each (pixer.train.calibrate).
    calib_subsets = plan_calibration(snr_range=snr_range, debris=args.debris)
    simulate_all(work, calib_subsets, args.jobs)
    empties, _ = build_samples(work, calib_subsets, tuple(args.size_jitter))
    model_dir = work / "model"
    metrics = train_segmentation(samples, model_dir, config, progress=False, resume=True,
                                 calibration_negatives=empties)
    cfg = json.loads((model_dir / "config.json").read_text())
    print(f"pick threshold {json.dumps(cfg.get('pick_threshold'))}", flush=True)
    cfg["general"] = dict(
        recipe="python bench/train_general.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        n_subsets=len(subsets), n_micrographs=len(samples), kinds=sorted({s["kind"] for s in subsets}),
        snr_db=list(snr_range), size_jitter=list(args.size_jitter), seconds_simulate=round(t_sim),
        seconds_prepare=round(t_prep), device=device,
        cpu_threads=torch.get_num_threads(),
    )
    (model_dir / "config.json").write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n")
    print(json.dumps({k: metrics[k] for k in ("val_iou", "best_val_iou", "steps", "seconds", "tiles_per_s")}),
          flush=True)
    if args.install:
        install_weights(model_dir, ("model.pt", "config.json"), "general")
    if args.evaluate:
        rows = evaluate(work, None if args.install else str(model_dir))
        (work / "eval_general.json").write_text(json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    raise SystemExit(main())
