"""Train a general crop classifier on simulated junk, with the general model's own false positives.

PIXER's picker removes false positives with a crop classifier (particle /
interference / noise). ``pixer train-classifier`` trains one on a user's data;
this script trains one for any data, as ``bench/train_general.py`` does for the
segmentation net:

* fresh simulated subsets from ``train_general.plan`` (another seed than the
  general model's training mix, so its candidates here are what it does on
  unseen micrographs), SNR -26 to -3 dB, three times the junk-only subsets, and
  small dark debris (``--debris``) in every micrograph with interference, with
  the same augmentations (coloured noise, blur, 8-bit quantisation);
* crops at the classifier's scale (the particle spans ``particle_px`` = 24 px,
  so one classifier serves every particle size): particles at the true centres,
  interference from the simulator's junk masks, noise far from both, and the
  **general model's own candidates** (score >= ``--candidate-min``) further than
  half a diameter from any particle, as interference: the mistakes the
  classifier is there to remove.

Its rule, stored in ``classifier.json`` (``particle_min`` 0, ``junk_max`` 0.7):
``pixer pick`` removes the candidates it gives P(interference) > 0.7 and keeps
the rest whatever P(particle) (faint particles look like noise to it, not like
junk). ``classifier.json["background"]`` records the general model's
empty-micrograph background with and without it, on fresh junk-only
micrographs. ``--install`` copies it into ``pixer/models/weights/general_classifier/``,
where ``pixer pick`` finds it (used by default with the general model).
Figures: docs/general_model.md, "A general crop classifier".

Usage (the shipped classifier; 17 min on 2 CPU cores)::

    python bench/train_general_classifier.py --work /tmp/pixer_gclf --scale 1.5 --steps 2000 --install
    python bench/train_general_classifier.py --work /tmp/g --scale 0.1 --steps 20   # a smoke run
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from train_general import (PARTICLE_PX, _augment, build_samples, install_weights, plan, plan_calibration,
                           simulate_all)

from pixer.data.preprocess import prepare
from pixer.io.coords import read_picks
from pixer.io.micrographs import read_micrograph
from pixer.models.classifier import CLASS_NAMES, extract_crops, load_classifier, predict_crops
from pixer.models.general import resolve_model
from pixer.models.store import load_model
from pixer.pick.batch import weights_stamp
from pixer.pick.localmax import grid_local_maxima
from pixer.pick.picker import PickParams, pick_image, probability_map
from pixer.pick.threshold import CANDIDATE_FLOOR, NULL_GRID, null_density, null_overdispersion
from pixer.train.classifier import ClassifierTrainConfig, micrograph_crops, train_classifier
from pixer.train.prepare import label_to_grid, target_apix


def subset_crops(sim: Path, k: int, apix: float, model, config: dict, params: dict,
                 clf: ClassifierTrainConfig) -> tuple[list, dict]:
    """Crops of one simulated subset; returns ``[(crops, labels), ...]`` per micrograph and counts."""
    info = json.loads((sim / "simulation.json").read_text())
    d = float(info["particle_diameter_A"])
    picks = read_picks([str(sim / "particles.star")]) if info["n_particles"] else None
    out, n_neg = [], 0
    for j, mic_path in enumerate(sorted((sim / "micrographs").glob("*.mrc"))):
        mic = read_micrograph(mic_path)
        data = _augment(mic.data, np.random.default_rng([7, k, j]), apix).astype(np.float32)
        image, used = prepare(data, apix, target_apix(apix, d, PARTICLE_PX))
        scale = np.array([image.shape[1] / data.shape[1], image.shape[0] / data.shape[0]])
        if picks is not None:
            rows = picks[picks["micrograph"].astype(str).str.endswith(mic_path.name)]
            centres = rows[["x", "y"]].to_numpy(np.float64) * scale
        else:
            centres = np.zeros((0, 2))
        junk_path = sim / "truth" / f"{mic_path.stem}_junk.mrc"
        junk = None
        if junk_path.is_file():
            mask = read_micrograph(junk_path, apix=1.0, blank_ok=True).data > 0
            junk = label_to_grid(mask, data.shape, apix, used, image.shape)
        cand, _, _ = pick_image(data, apix, model, config, PickParams(diameter_A=d, **params))
        neg = cand[["x", "y"]].to_numpy(np.float64) * scale
        crops, labels = micrograph_crops(image, centres, junk, clf, np.random.default_rng([11, k, j]), negatives=neg)
        n_neg += len(neg)
        out.append((crops, labels))
    return out, dict(diameter_A=round(d, 1), candidates=n_neg)


def background(work: Path, model, classifier, crop: int, particle_min: float, junk_max: float, n: int,
               seed: int) -> dict:
    """The segmentation model's empty-micrograph background once the classifier has removed its candidates.

    ``pixer pick --threshold auto`` weighs a run's candidates against the background the model stores
    (``pick_threshold["null"]``), measured without a classifier; with one, fewer candidates reach the
    threshold, on particles and on junk alike, so the stored background would overstate what is left.
    This measures it as the model's was measured (:func:`pixer.train.calibrate.calibrate_pick_threshold`:
    tiles of 512 px, stride 256, candidates above the floor, densities on :data:`NULL_GRID`) on ``n``
    fresh junk-only micrographs (``plan_calibration``, another seed), with and without the classifier.
    """
    subsets = plan_calibration(n=n, seed=seed, snr_range=(-26.0, -3.0))
    simulate_all(work, subsets, jobs=2)
    empties, _ = build_samples(work, subsets)
    both: dict[bool, list] = {False: [], True: []}
    areas = []
    with torch.inference_mode():
        for image, _ in empties:
            prob = probability_map(image, model, 512, 256)
            xy, scores = grid_local_maxima(prob, PARTICLE_PX, min_score=CANDIDATE_FLOOR)
            p = (predict_crops(classifier, extract_crops(image, np.asarray(xy, np.float64).reshape(-1, 2), crop))
                 if len(scores) else np.zeros((0, len(CLASS_NAMES))))  # fmt: skip
            keep = ((p[:, CLASS_NAMES.index("particle")] >= particle_min)
                    & (p[:, CLASS_NAMES.index("interference")] <= junk_max))  # as pixer.pick.picker.pick_image
            both[False].append(np.asarray(scores))
            both[True].append(np.asarray(scores)[keep])
            areas.append(image.size / PARTICLE_PX**2)
    out = {}
    for used, per in both.items():
        scores = np.concatenate(per)
        out["with_classifier" if used else "without"] = dict(
            grid=list(NULL_GRID), density=null_density(scores, sum(areas)), area=round(sum(areas), 3),
            kappa=null_overdispersion(per, areas))
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--work", default="/tmp/pixer_gclf")
    p.add_argument("--scale", type=float, default=1.0, help="subsets = 48 x scale (2 micrographs each)")
    p.add_argument("--debris", type=float, default=4.0, help="debris mean per micrograph with interference")
    p.add_argument("--empties", type=float, default=3.0)
    p.add_argument("--seed", type=int, default=31337, help="simulation plan seed (the general model's is 20260)")
    p.add_argument("--model", default=None, help="segmentation model whose candidates are the hard negatives "
                                                  "(default: the general model)")
    p.add_argument("--candidate-min", type=float, default=0.2, help="least score of a candidate used as a negative")
    p.add_argument("--steps", type=int, default=1500)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--particle-min", type=float, default=0.0,
                   help="the classifier's own --classifier-min (least P(particle) a candidate keeps)")
    p.add_argument("--junk-max", type=float, default=0.7,
                   help="the classifier's own --classifier-junk (most P(interference) a candidate keeps)")
    p.add_argument("--background-micrographs", type=int, default=24,
                   help="fresh junk-only micrographs for the background with the classifier")
    p.add_argument("--install", action="store_true",
                   help="copy classifier.pt + classifier.json into pixer/models/weights/general_classifier/")
    args = p.parse_args(argv)
    work = Path(args.work).resolve()
    t0 = time.perf_counter()
    subsets = plan(args.scale, seed=args.seed, snr_range=(-26.0, -3.0), empties=args.empties, debris=args.debris)
    simulate_all(work, subsets, jobs=args.jobs)
    t_sim = time.perf_counter() - t0
    model_dir = resolve_model(args.model)
    model, config = load_model(model_dir)
    clf_dir = work / "classifier"
    meta_path = clf_dir / "classifier.json"
    if not (meta_path.is_file() and "general" in json.loads(meta_path.read_text())):  # else: trained already
        clf = ClassifierTrainConfig(particle_px=PARTICLE_PX, steps=args.steps, batch_size=args.batch_size,
                                    lr=args.lr, eval_every=max(1, args.steps // 10), seed=0)
        crops, labels, groups, stats = [], [], [], []
        with torch.inference_mode():
            for k, s in enumerate(subsets):
                per_mic, st = subset_crops(work / "sim" / s["name"], k, s["apix"], model, config,
                                           dict(threshold=args.candidate_min), clf)
                for c, lab in per_mic:
                    crops.append(c)
                    labels.append(lab)
                    groups.append(np.full(len(lab), len(groups), np.int64))
                stats.append(dict(subset=s["name"], **st))
        crops, labels, groups = np.concatenate(crops), np.concatenate(labels), np.concatenate(groups)
        t_crops = time.perf_counter() - t0 - t_sim
        torch.manual_seed(0)
        metrics = train_classifier(crops, labels, groups, clf_dir, clf, progress=False)
        meta = json.loads(meta_path.read_text())
        meta["general"] = dict(command=" ".join(sys.argv), subsets=len(subsets), debris=args.debris,
                               candidate_min=args.candidate_min, seed=args.seed, stats=stats,
                               seconds=dict(simulate=round(t_sim, 1), crops=round(t_crops, 1),
                                            train=round(metrics["seconds"], 1)))  # fmt: skip
        meta_path.write_text(json.dumps(meta, indent=1))
    meta = json.loads(meta_path.read_text())
    classifier, info = load_classifier(clf_dir)
    bg = background(work, model, classifier, int(info["crop"]), args.particle_min, args.junk_max,
                    args.background_micrographs, seed=4242)
    stored = (config.get("pick_threshold") or {}).get("null") or {}
    meta["particle_min"], meta["junk_max"] = args.particle_min, args.junk_max
    meta["background"] = dict(model=weights_stamp(model_dir), null=bg["with_classifier"], without=bg["without"],
                              micrographs=args.background_micrographs)
    meta_path.write_text(json.dumps(meta, indent=1))
    at = {t: NULL_GRID.index(t) for t in (0.1, 0.316228, 0.562341)}
    print(json.dumps(dict(counts=meta["metrics"]["counts"], val_accuracy=meta["metrics"]["val_accuracy"],
                          recall=meta["metrics"]["recall"], seconds=meta["general"]["seconds"],
                          background={name: {t: d["density"][i] for t, i in at.items()}
                                      for name, d in (("stored", stored), ("without", bg["without"]),
                                                      ("with_classifier", bg["with_classifier"])) if d})))
    if args.install:
        install_weights(clf_dir, ("classifier.pt", "classifier.json"), "general_classifier")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
