"""Pick particles on micrographs with a trained model, on this machine or a cluster.

Each micrograph is binned so the particle spans the model's particle size in
pixels, normalised, segmented in overlapping tiles (512 px, stride 256,
overlaps averaged) into a particle-probability map, and PIXER's grid-based
local-maximum search (grid cell, window and overlap suppression scaled to the
diameter) turns the map into centres with scores.

Scale: by default a Dask LocalCluster of worker processes sized to the machine
(--workers, one torch thread per core); --cluster slurm submits SLURM jobs
(dask-jobqueue, adaptive between 1 and --max-jobs jobs of --cores/--memory/
--gpus/--walltime each); --scheduler-address attaches to a running Dask
scheduler; --cluster none runs a plain loop in this process. Work goes out in
batches of --batch-micrographs; each worker loads the model once.

Threshold: candidates above a low floor (0.001) are stored per micrograph in
parts/; the threshold is applied when they are gathered. --threshold auto
(default): with a model that stores its background (the general model: candidate
scores per particle area on empty micrographs full of junk), the cut with the best
F1 estimated from how many picks exceed that background, among cuts where it is
under 30 % of the picks and significant (an empty run gets none); else an Otsu
split of the pooled candidate scores above 0.05 when they are clearly bimodal
(separability >= 0.8, >= 30 candidates; clamped to 0.1-0.9); else the model's own
threshold when it has one (`pixer train` stores the F1-optimal cut on its held-out
validation micrographs), else 0.5;
--calibrate-with COORDS picks the F1-optimal threshold on the
micrographs those coordinates label; a number is used as is. The value is
written to summary.csv and pixer_pick.json.

Outputs in --out: RELION coordinate STARs (coords/, with
coords_suffix_pixer.star and autopick.star), micrographs.star, one RELION 3.1
particles.star, picks_topaz.txt, EMAN box/, picks.csv, summary.csv (one row per
micrograph: status, picks, candidates, threshold, seconds, worker,
slurm_job_id), failed.csv (micrograph, reason) and parts/. Rerunning the same
command skips micrographs whose part exists (made with the same model,
classifier and rule, edge margin, minimum distance and contrast; otherwise
recomputed) and first removes the temporary files an interrupted run left; failed micrographs are listed and
the run goes on.

Model: --model MODEL_DIR (pixer train); without it, the general model shipped
with pixer (trained on pixer's simulator over many specimens, SNRs, pixel
sizes, defocus and interference; fine-tune it with `pixer train --init general`).
With the general model, the general crop classifier shipped beside it removes
the candidates it calls interference (P > 0.7; small dark debris, ice and
contamination the segmentation takes for particles); --classifier none turns
it off, --classifier DIR uses one of your own (pixer train-classifier).

example:
  pixer pick --micrographs 'data/*.mrc' --diameter 120 --out picks   # general model
  pixer pick --micrographs 'data/*.mrc' --model model --diameter 120 --out picks
  pixer pick --micrographs mics.star --model model --diameter 120 --out picks \\
      --cluster slurm --queue gpu --cores 8 --memory 32GB --gpus 1 --max-jobs 10
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import pandas as pd
import torch

from pixer.cli._common import nonnegative_float, positive_float, positive_int, write_run_record
from pixer.errors import PixerError
from pixer.evaluate.matching import mic_key
from pixer.io.coords import read_picks
from pixer.io.micrographs import list_micrographs
from pixer.io.paths import atomic_path, remove_stale_temps, write_text_atomic
from pixer.models.classifier import load_classifier
from pixer.models.general import AUTO, resolve_classifier, resolve_model
from pixer.models.store import load_model
from pixer.pick.batch import (SUMMARY_COLUMNS, PickTask, failed_row, gather_parts, run_area, weights_stamp,
                              write_outputs)
from pixer.pick.picker import PickParams, classifier_rule
from pixer.pick.search import NO_BACKGROUND, POLARITIES, SEARCH_MIN_PER_MICROGRAPH, background_of
from pixer.pick.threshold import CANDIDATE_FLOOR, apply_threshold, auto_threshold, calibrated_threshold

CLUSTER_KINDS = ("local", "slurm", "none")


def probability(text: str) -> float:
    """argparse type: a number in [0, 1]."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1], got {text!r}") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be in [0, 1], got {text}")
    return value


def threshold_arg(text: str) -> str | float:
    """argparse type: ``auto`` or a score in [0, 1]."""
    if text == "auto":
        return text
    try:
        return probability(text)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(f"expected 'auto' or a number in [0, 1], got {text!r}") from None


def add_args(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``pixer pick``."""
    parser.add_argument("--micrographs", required=True, nargs="+",
                        help="micrographs: folder, glob, file(s) or a RELION micrographs STAR")
    parser.add_argument("--model", default=None,
                        help="model folder written by pixer train (default: the general model shipped with "
                             "pixer, trained on simulated micrographs of many specimens; see "
                             "docs/general_model.md)")
    parser.add_argument("--classifier", default=AUTO,
                        help="crop classifier that removes candidates it gives P(particle) < --classifier-min or "
                             "P(interference) > --classifier-junk: a folder (pixer train-classifier), 'general' (the "
                             "one shipped with pixer, trained on simulated junk and the general model's own false "
                             "positives), 'none', or 'auto' (default): 'general' when picking with the general "
                             "model, else none")
    parser.add_argument("--classifier-min", type=probability, default=None, metavar="P",
                        help="least P(particle) a candidate must get from the classifier (default: the "
                             "classifier's own, 'particle_min' in its classifier.json, else 0.5)")
    parser.add_argument("--classifier-junk", type=probability, default=None, metavar="P",
                        help="most P(interference) a candidate may get from the classifier (default: the "
                             "classifier's own, 'junk_max' in its classifier.json, else 1: no limit; the general "
                             "classifier's is 0.7, with --classifier-min 0)")
    parser.add_argument("--diameter", type=positive_float, required=True, help="particle diameter in Å")
    search = parser.add_mutually_exclusive_group()
    search.add_argument("--diameter-search", type=positive_float, nargs="*", default=None, metavar="F",
                        help="before the run, pick --search-micrographs of the micrographs at these factors on "
                             "--diameter (none given: 0.8 0.9 1 1.1 1.25 1.4) and run at the one where the most "
                             "particles stand out from the model's empty-micrograph background (of those within "
                             f"5 %% of the most, the one nearest 1; --diameter stays when fewer than "
                             f"{SEARCH_MIN_PER_MICROGRAPH:g} per "
                             "micrograph stand out at every factor). Default: on, with those factors, for a model "
                             "that stores its background (the general model does), off for others")
    search.add_argument("--no-diameter-search", action="store_true",
                        help="pick at --diameter as given, with no search")
    parser.add_argument("--search-micrographs", type=positive_int, default=8, metavar="N",
                        help="micrographs (spread over the run) the diameter search picks (default 8)")
    parser.add_argument("--polarity", choices=POLARITIES, default="auto",
                        help="particle contrast: dark (cryo-EM: darker than the ice), bright (negative stain, "
                             "inverted files: the micrographs are inverted first) or auto (default): with a model "
                             "that stores its background, the search sample is also picked inverted at --diameter "
                             "and the run inverted when that finds 20 %% more particles (and 2 per micrograph); "
                             "else dark")
    adapt = parser.add_argument_group("self-training (--adapt; docs/general_model.md, \"Self-training\")")
    adapt.add_argument("--adapt", action="store_true",
                       help="before the run, fine-tune the model on --adapt-micrographs of the micrographs with its "
                            "own picks as labels (no labels needed; uncertain candidates are left out of the loss), "
                            "then pick the whole run with the adapted model (written to OUT/adapted_model). Skipped, "
                            "with the model kept, when a model that stores its background (the general model) "
                            "finds under 10 particles per micrograph above it")
    adapt.add_argument("--adapt-rounds", type=positive_int, default=2, metavar="N",
                       help="pick → pseudo-label → fine-tune rounds (default 2)")
    adapt.add_argument("--adapt-steps", type=positive_int, default=300, metavar="N",
                       help="optimiser steps per round (default 300)")
    adapt.add_argument("--adapt-micrographs", type=positive_int, default=16, metavar="N",
                       help="micrographs (spread over the run) to self-train on (default 16)")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--apix", type=positive_float, default=None,
                        help="micrograph pixel size in Å/px (default: from the MRC header)")
    parser.add_argument("--threshold", type=threshold_arg, default="auto",
                        help="minimum score (0-1) of a pick, or 'auto' (default): the best cut against the "
                             "model's empty-micrograph background when it stores one, else an Otsu split of the "
                             "candidate scores when bimodal, else the model's own calibrated threshold, else 0.5")
    parser.add_argument("--calibrate-with", metavar="COORDS", nargs="+", default=None,
                        help="labelled coordinates of some of the micrographs: use the F1-optimal threshold on them")
    parser.add_argument("--min-distance", type=positive_float, default=None,
                        help="minimum distance between picks in Å (default: the search's overlap rule)")
    parser.add_argument("--edge-margin", type=nonnegative_float, default=0.0, metavar="Å",
                        help="drop picks whose centre is closer than this to the micrograph edge, in Å "
                             "(default 0: keep all; the particle radius drops particles the edge cuts)")
    parser.add_argument("--max-picks", type=positive_int, default=None, help="cap on picks per micrograph")
    parser.add_argument("--batch-size", type=positive_int, default=8, help="tiles per forward pass (default 8)")
    parser.add_argument("--device", default="auto", help="torch device: auto, cpu, cuda, cuda:1 ... (default auto)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    scale = parser.add_argument_group("scale-out (Dask)")
    scale.add_argument("--cluster", choices=CLUSTER_KINDS, default="local",
                       help="local: Dask processes on this machine (default); slurm: SLURM jobs via "
                            "dask-jobqueue; none: a plain loop in this process")
    scale.add_argument("--workers", type=positive_int, default=None,
                       help="local worker processes (default: one per core; with --device cuda one per "
                            "GPU, each worker given its own)")
    scale.add_argument("--threads-per-worker", type=positive_int, default=1,
                       help="Dask threads per worker process (default 1)")
    scale.add_argument("--torch-threads", type=positive_int, default=None,
                       help="torch threads per worker, or of this process with --cluster none (default: "
                            "the cores shared out among the workers)")
    scale.add_argument("--batch-micrographs", type=positive_int, default=8,
                       help="micrographs per Dask task (default 8)")
    scale.add_argument("--retries", type=int, default=2, help="Dask retries of a failed task (default 2)")
    scale.add_argument("--scheduler-address", default=None, metavar="TCP://HOST:PORT",
                       help="attach to a running Dask scheduler instead of starting a cluster")
    slurm = parser.add_argument_group("SLURM (--cluster slurm; one worker per job)")
    slurm.add_argument("--queue", default=None, help="partition (default: the cluster's default)")
    slurm.add_argument("--cores", type=positive_int, default=1, help="CPUs per job (default 1)")
    slurm.add_argument("--memory", default="4GB", help="memory per job, e.g. 16GB (default 4GB)")
    slurm.add_argument("--gpus", type=int, default=0, help="GPUs per job (--gres=gpu:N; default 0)")
    slurm.add_argument("--walltime", default="01:00:00", help="time limit per job (default 01:00:00)")
    slurm.add_argument("--max-jobs", type=positive_int, default=4,
                       help="most jobs at once; scaling is adaptive between 1 and this (default 4)")
    slurm.add_argument("--job-extra", action="append", default=[], metavar="=SBATCH_OPTION",
                       help="extra #SBATCH option, repeatable: --job-extra=--qos=high")
    slurm.add_argument("--interface", default="auto",
                       help="network interface of scheduler and workers (default auto: lo on a one-node cluster)")
    slurm.add_argument("--startup-timeout", type=positive_float, default=300.0,
                       help="seconds to wait for the first SLURM worker (default 300)")


def resolve_device(name: str) -> str:
    """``auto`` → ``cuda`` when available, else ``cpu``."""
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return name


def _check_model(model_dir: str) -> dict:
    """The model's config, after loading it once here so that a bad folder fails before any work."""
    _, config = load_model(model_dir, device="cpu")
    if config.get("particle_px") is None:
        raise PixerError(f"{model_dir}: model config has no particle_px (not a pixer segmentation model?)")
    return config


def _cluster_options(args: argparse.Namespace, device: str) -> dict:
    from pixer.scale.cluster import gpu_layout

    workers, gpus = args.workers, []
    if args.cluster == "local" and args.scheduler_address is None:
        # --device cuda on a machine with several GPUs: one worker process per GPU
        n_gpus = torch.cuda.device_count() if device.startswith("cuda") else 0
        workers, gpus = gpu_layout(device, workers, n_gpus, os.environ.get("CUDA_VISIBLE_DEVICES"))
    return dict(scheduler_address=args.scheduler_address, startup_timeout=args.startup_timeout,
                torch_threads=args.torch_threads, workers=workers, worker_gpus=gpus,
                threads_per_worker=args.threads_per_worker, queue=args.queue, cores=args.cores,
                memory=args.memory, gpus=args.gpus, walltime=args.walltime, max_jobs=args.max_jobs,
                job_extra=args.job_extra, interface=args.interface,
                log_directory=str(Path(args.out) / "slurm_logs"))  # fmt: skip


def _choose_threshold(args, candidates: pd.DataFrame, truth: pd.DataFrame | None, apix: float, model_config: dict,
                      area: float | None = None, micrographs: int | None = None) -> tuple[float, str]:
    """The threshold of this run and how it was chosen (``area``: the run's, in particle areas, over
    ``micrographs`` micrographs)."""
    if truth is not None:
        keys = {mic_key(m) for m in truth["micrograph"].astype(str)}
        labelled = candidates[[mic_key(m) in keys for m in candidates["micrograph"]]]
        if labelled.empty:
            raise PixerError(f"{args.calibrate_with[0]}: no labelled micrograph among the picked ones")
        return calibrated_threshold(labelled, truth, args.diameter / apix)
    if args.threshold == "auto":
        return auto_threshold(candidates["score"].to_numpy(), model_config.get("pick_threshold"), area,
                              micrographs=micrographs)
    return float(args.threshold), "fixed: --threshold"


def _classifier(args, model_dir: str) -> tuple[str | None, dict]:
    """``--classifier``, ``--classifier-min`` and ``--classifier-junk``: the classifier folder a run with
    the model in ``model_dir`` uses (None: none; also set as ``args.classifier_dir``, its
    :func:`~pixer.pick.batch.weights_stamp` as ``args.classifier_stamp``) and the run record's
    ``classifier`` entry. A bad folder fails here, before any work."""
    folder = resolve_classifier(args.classifier, model_dir)
    args.classifier_dir = None if folder is None else str(folder.resolve())
    args.classifier_stamp = 0.0 if folder is None else weights_stamp(folder)
    if folder is None:
        why = "--classifier none" if args.classifier == "none" else "auto: no classifier for this model"
        return None, {"used": False, "rule": why}
    info = load_classifier(folder)[1]
    rule = ("auto: the general classifier, with the general model" if args.classifier in (None, AUTO)
            else f"--classifier {args.classifier}")
    given = classifier_rule(info, args.classifier_min, args.classifier_junk)
    return args.classifier_dir, {"used": True, "dir": args.classifier_dir, "rule": rule,
                                 "particle_min": given["classifier_min"], "junk_max": given["classifier_junk"]}


def _classifier_key(args) -> str | None:
    """What identifies the run's classifier in the diameter search's cache key (its weights)."""
    return None if args.classifier_dir is None else repr(args.classifier_stamp)


def _search_diameter(args, paths: list[Path], params: PickParams, device: str, client=None,
                     factors: list[float] | None = None) -> tuple[PickParams, dict, dict]:
    """The diameter search and the contrast check: the parameters to run with, what the search found
    (printed too) and the contrast chosen. ``factors`` None: the diameter search's; ``[1]``: only the
    contrast check (``--no-diameter-search`` with ``--polarity auto``).

    With a Dask client the search runs as one task on a worker (on SLURM: in a worker job, next to
    its GPU, not on the submitting host); without, in this process.
    """
    import hashlib
    from dataclasses import asdict, replace

    from pixer.pick.search import DEFAULT_FACTORS, sample_evenly, search_factors, search_task

    factors = factors or args.diameter_search or DEFAULT_FACTORS
    only_contrast = search_factors(factors) == [1.0]
    # a rerun (resume, re-threshold) reuses the search the same model, micrographs and settings made
    cache = Path(args.out) / "diameter_search.json"
    key = {"model": hashlib.sha256((Path(args.model) / "config.json").read_bytes()).hexdigest(),
           "params": asdict(params), "factors": search_factors(factors), "apix": args.apix,
           "polarity": args.polarity, "classifier": _classifier_key(args),
           "micrographs": [str(Path(p).resolve()) for p in sample_evenly(list(paths), args.search_micrographs)]}
    if cache.is_file():
        try:
            stored = json.loads(cache.read_text())
        except (OSError, ValueError):
            stored = {}
        if stored.get("key") == key:
            record, contrast = stored["record"], stored["contrast"]
            print(f"diameter search: reused from {cache}; picking at {args.diameter * record['factor']:.1f} Å "
                  f"(× {record['factor']:g}), {contrast['polarity']} particles", flush=True)
            return (replace(params, diameter_A=args.diameter * record["factor"], invert=contrast["invert"]), record,
                    contrast)  # fmt: skip
    task = (str(Path(args.model).resolve()), device, [str(p) for p in paths], params, list(factors), args.apix,
            args.search_micrographs)
    kwargs = dict(polarity=args.polarity, classifier_dir=args.classifier_dir)
    n = min(len(paths), args.search_micrographs)
    what = "contrast check" if only_contrast else "diameter search"
    if client is not None:
        print(f"{what}: on {n} micrograph(s), on a worker ...", flush=True)
        factor, table, contrast, where = client.submit(search_task, *task, **kwargs, pure=False).result()
    else:
        if args.torch_threads:
            torch.set_num_threads(args.torch_threads)
        factor, table, contrast, where = search_task(*task, progress=not args.no_progress, **kwargs)
    both = (f"as they are {contrast['dark']:.1f}, inverted {contrast['bright']:.1f}; "
            if "bright" in contrast and "dark" in contrast else "")
    sizes = "" if only_contrast else ", ".join(f"{r.diameter_A:.0f} Å: {r.per_micrograph:.1f}"
                                               for r in table.itertuples()) + "; "
    few = (f" (fewer than {SEARCH_MIN_PER_MICROGRAPH:g} per micrograph at every size: too few to change "
           "--diameter for)" if not only_contrast and table["per_micrograph"].max() < SEARCH_MIN_PER_MICROGRAPH else "")
    print(f"{what} on {n} micrograph(s): estimated particles per micrograph {both}{sizes}"
          f"picking {contrast['polarity']} particles at {args.diameter * factor:.1f} Å (× {factor:g})"
          + (" on the inverted micrographs" if contrast["invert"] else "") + few, flush=True)
    record = {"nominal_diameter_A": args.diameter, "factor": factor, "micrographs": n,
              "table": table.round(4).to_dict(orient="list"), **where}  # fmt: skip
    contrast = {k: (round(v, 4) if isinstance(v, float) else v) for k, v in contrast.items()}
    write_text_atomic(cache, json.dumps({"key": key, "record": record, "contrast": contrast}, indent=1) + "\n")
    return replace(params, diameter_A=args.diameter * factor, invert=contrast["invert"]), record, contrast


def _self_train(args, paths: list[Path], params: PickParams, device: str, client=None) -> tuple[str, dict]:
    """``--adapt``: the model folder to pick with (the adapted one, or the given one when there is nothing to
    learn) and the run record's ``adapt`` entry. On SLURM (or an attached scheduler) it trains on a worker,
    next to its GPU; on this machine in this process, with all its cores (a local worker has one thread)."""
    from pixer.train.adapt import AdaptConfig, NothingToLearn, self_train

    config = AdaptConfig(rounds=args.adapt_rounds, steps=args.adapt_steps, max_micrographs=args.adapt_micrographs,
                         device=device)  # fmt: skip
    dest = Path(args.out).resolve() / "adapted_model"
    inputs = ([str(p) for p in paths], params.diameter_A, str(dest))
    kwargs = dict(model=str(Path(args.model).resolve()), apix=args.apix, invert=params.invert, config=config)
    n = min(len(paths), args.adapt_micrographs)
    remote = client is not None and (args.cluster == "slurm" or args.scheduler_address is not None)
    print(f"self-training on {n} micrograph(s)" + (", on a worker" if remote else "") + " ...", flush=True)
    try:
        if remote:
            record = client.submit(self_train, *inputs, **kwargs, progress=False, pure=False).result()
        else:
            record = self_train(*inputs, **kwargs, progress=not args.no_progress)
    except NothingToLearn as exc:
        print(f"self-training skipped: {exc}; picking with {args.model}", flush=True)
        return args.model, {"adapted": False, "reason": str(exc)}
    last = record["rounds"][-1]
    print(f"self-trained in {len(record['rounds'])} round(s) ({sum(r['seconds'] for r in record['rounds']):.0f} s "
          f"of training; {last['particles']} pseudo-particles in the last); picking with {dest}", flush=True)
    return str(dest), {"adapted": True, "model": str(dest), **record}


def main(args: argparse.Namespace) -> int:
    """Run ``pixer pick``."""
    from pixer.scale import map_micrographs, open_client

    out = Path(args.out)
    if args.calibrate_with and args.threshold != "auto":
        raise PixerError("--calibrate-with chooses the threshold: drop --threshold")
    if args.cluster != "slurm" and args.scheduler_address is None and args.gpus:
        raise PixerError("--gpus is a SLURM request: use it with --cluster slurm")
    paths = list_micrographs(args.micrographs)
    device = resolve_device(args.device)
    args.model = str(resolve_model(args.model))
    config = _check_model(args.model)
    classifier_dir, classifier = _classifier(args, args.model)
    truth = read_picks(args.calibrate_with) if args.calibrate_with else None
    floor = CANDIDATE_FLOOR if args.threshold == "auto" else min(CANDIDATE_FLOOR, float(args.threshold))
    params = PickParams(diameter_A=args.diameter, threshold=floor, min_distance_A=args.min_distance,
                        max_picks=None, batch_size=args.batch_size, edge_margin_A=args.edge_margin,
                        invert=args.polarity == "bright",
                        classifier_min=classifier.get("particle_min", PickParams.classifier_min),
                        classifier_junk=classifier.get("junk_max", PickParams.classifier_junk))  # fmt: skip
    search, adapted = None, None
    has_background = background_of(config) is not None
    searching = args.diameter_search is not None or (has_background and not args.no_diameter_search)
    checking = args.polarity == "auto" and has_background  # the contrast, from the micrographs
    contrast = {"polarity": "bright" if params.invert else "dark", "invert": params.invert,
                "rule": "given (--polarity)" if args.polarity != "auto" else
                        "not checked: the model stores no background"}  # fmt: skip
    if searching and not has_background:  # fail before any cluster starts
        raise PixerError(f"{args.model}: {NO_BACKGROUND}")
    names = [str(p) for p in paths]
    stale = remove_stale_temps(out)
    if stale:
        print(f"pixer pick: removed {len(stale)} temporary file(s) an interrupted run left in {out}", flush=True)
    if args.cluster == "none" and args.scheduler_address is None and args.torch_threads:
        torch.set_num_threads(args.torch_threads)
    t0 = time.perf_counter()
    with open_client(args.cluster, **_cluster_options(args, device)) as client:
        if searching or checking:
            params, search, found = _search_diameter(args, paths, params, device, client,
                                                     factors=None if searching else [1.0])  # fmt: skip
            contrast = {**found, "rule": "auto: the sample picked both ways" if checking else "given (--polarity)"}
            search = search if searching else None
        model_dir = args.model
        if args.adapt:
            model_dir, adapted = _self_train(args, paths, params, device, client)
            config = _check_model(model_dir)
            # auto: the general classifier learnt the general model's mistakes, not an adapted model's
            classifier_dir, classifier = _classifier(args, model_dir)
        task = PickTask(str(Path(model_dir).resolve()), str(out.resolve()), params, apix=args.apix, device=device,
                        classifier_dir=classifier_dir, model_stamp=weights_stamp(model_dir),
                        classifier_stamp=args.classifier_stamp)
        rows = map_micrographs(task, names, batch=args.batch_micrographs, client=client, retries=args.retries,
                               on_error=failed_row, progress=not args.no_progress,
                               postfix=lambda done: {"failed": sum(r["status"] == "failed" for r in done)})
    summary = pd.DataFrame(rows, columns=SUMMARY_COLUMNS)
    failed = summary[summary["status"] == "failed"]
    with atomic_path(out / "failed.csv") as tmp:
        failed[["micrograph", "error"]].to_csv(tmp, index=False)
    done = summary[summary["status"] != "failed"]
    if done.empty:
        raise PixerError(f"{args.micrographs[0]}: every micrograph failed, first error: {failed['error'].iloc[0]}")
    apix = args.apix or float(done["apix"].dropna().median())
    candidates = gather_parts(out, list(done["micrograph"]))
    threshold, rule = _choose_threshold(args, candidates, truth, apix, config, run_area(out, list(done["micrograph"])),
                                        micrographs=len(done))
    picks = apply_threshold(candidates, threshold, args.max_picks)
    counts = picks["micrograph"].value_counts()
    summary.insert(2, "n_picks", [int(counts.get(m, 0)) for m in summary["micrograph"]])
    summary.insert(4, "threshold", threshold)
    outputs = write_outputs(out, picks, list(done["micrograph"]), apix, args.diameter, summary)
    seconds = time.perf_counter() - t0
    write_run_record(out, "pick", args, apix=apix, device=device, model_config=config, threshold=threshold,
                     diameter_used_A=params.diameter_A, diameter_search=search, contrast=contrast, adapt=adapted,
                     classifier=classifier,
                     threshold_rule=rule, candidate_floor=floor, n_micrographs=len(paths), n_failed=len(failed),
                     n_skipped=int((summary["status"] == "skipped").sum()), n_picks=len(picks), seconds=seconds)
    print(f"picked {len(picks)} particles on {len(done)} micrographs in {seconds:.1f} s "
          f"({len(done) / max(seconds, 1e-9):.2f} micrographs/s); threshold {threshold:.3f} ({rule}); "
          f"outputs in {out}")
    for f in failed.itertuples():
        print(f"failed: {f.error}")
    print(json.dumps({k: str(v) for k, v in outputs.items()}, indent=2))
    return 0
