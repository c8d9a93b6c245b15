"""Training loop of the segmentation network on (image, label) pairs.

Inputs are micrographs already prepared at the model's pixel size
(:func:`pixer.data.preprocess.prepare`) and uint8 label images of the same
shape (e.g. :func:`pixer.labels.discs.disc_labels_for_picks`). Training draws
random ``tile × tile`` crops with flips / 90° rotations, minimises BCE-with-logits
(plus optional soft Dice) with AdamW and a warm-up + cosine learning-rate
schedule, and reports IoU at probability 0.5 on fixed tiles of held-out
micrographs.

Scale and restarts:

- **DDP.** Launched by ``torchrun`` or ``srun`` (:mod:`pixer.train.distributed`),
  each of ``W`` processes takes ``batch_size / W`` crops per step; BatchNorm uses
  the statistics of the combined batch (SyncBatchNorm on GPUs, an all-reduce
  BatchNorm on CPUs), and :class:`TileDataset` item ``i`` depends only on
  ``(seed, i)``, so ``W`` processes compute what one process does with the whole
  batch, up to float rounding (the Dice term, if used, is per rank). Only rank 0
  validates and writes.
- **Checkpoints** every ``checkpoint_every`` steps (:mod:`pixer.train.checkpoint`);
  ``resume=True`` continues from ``out_dir/checkpoint.pt`` bit for bit on CPU.
- **bf16 autocast** on CUDA (``amp``); loader workers ``num_workers`` (items are
  cut from in-memory images, so workers only help when the CPU is slow).
- ``init_trunk``: start the trunk from a classifier (PIXER's initialisation);
  ``init_from``: start every weight from a saved segmentation model (fine-tuning).

Outputs in ``out_dir``: ``model.pt`` + ``config.json``
(:func:`pixer.models.store.save_model`; with held-out validation micrographs
``config.json["pick_threshold"]`` holds the F1-optimal pick threshold on them,
:mod:`pixer.train.calibrate`), ``train_log.csv`` (step, loss, val_loss, val_iou,
lr), ``train_curve.png`` and, with checkpoints, ``checkpoint.pt``, each written
atomically.
"""

from __future__ import annotations

import functools
import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from pixer.errors import PixerError
from pixer.labels.discs import IGNORE
from pixer.models.classifier import init_trunk
from pixer.models.segmentation import AtrousSegNet, n_parameters
from pixer.models.store import load_model, save_model
from pixer.train import checkpoint as ckpt_io
from pixer.train.calibrate import calibrate_pick_threshold
from pixer.train.distributed import (
    DistEnv,
    ShardSampler,
    cleanup,
    gather_objects,
    log_rank,
    max_rank_difference,
    mean_over_ranks,  # fmt: skip
    setup,
    sync_batchnorm,
)
from pixer.train.log import plot_curve, write_log
from pixer.train.tiles import Sample, TileDataset, split_samples, validation_tiles



@dataclass
class TrainConfig:
    """Training arguments (all saved under ``config.json["train"]``).

    Attributes
    ----------
    tile : int
        Training crop size, px at the model's pixel size.
    batch_size : int
        Crops per step.
    steps : int
        Optimiser steps.
    lr, weight_decay : float
        AdamW peak learning rate and decoupled weight decay.
    warmup_steps : int
        Linear warm-up steps before the cosine decay (capped at ``steps // 10``).
    n_branches, width, branch_width : int
        Architecture (see :class:`pixer.models.segmentation.SegNetConfig`).
    seed : int
        Seed of weights, crops and the validation split.
    val_fraction : float
        Fraction of samples (micrographs) held out for validation (at least one
        when there are two or more samples; with a single sample it is
        validated on itself and ``val_held_out`` is False in the metrics).
    val_tiles : int
        Most validation tiles (non-overlapping, spread over held-out images).
    eval_every : int
        Steps between validations / log rows (and one at the end).
    pos_weight : float
        BCE weight of particle pixels (> 1 favours recall).
    dice_weight : float
        Weight of a soft Dice term added to BCE (0 = BCE only).
    augment : bool
        Random flips and 90° rotations.
    device : str
        Torch device.
    num_workers : int
        DataLoader workers (per process).
    checkpoint_every : int
        Steps between checkpoints (0 = none, except when stopped early).
    amp : bool or None
        bf16 autocast on CUDA (None = on for CUDA; never on CPU).
    init_trunk : str or None
        Classifier folder whose trunk initialises the network.
    init_from : str or None
        Segmentation model folder (:func:`pixer.models.store.save_model`) whose
        weights initialise the whole network (fine-tuning, e.g. the general
        model); its architecture must equal ``n_branches``/``width``/``branch_width``.
    apix : float or None
        Pixel size of the training images, Å/px (recorded for inference).
    diameter_A : tuple of float or None
        Particle diameter range ``(min, max)``, Å (recorded).
    norm_k : float
        Normalisation clip used when preparing the images (recorded).
    stride : int or None
        Tile stride for inference, px (recorded; default ``tile // 2``).
    particle_px : float or None
        Particle diameter in pixels at the training pixel size (recorded:
        ``pixer pick`` bins micrographs so particles appear this size).
    max_picks_per_empty : float
        The model's own pick threshold is raised until held-out micrographs
        without particles keep at most this many picks each
        (:func:`pixer.train.calibrate.calibrate_pick_threshold`).
    """

    tile: int = 256
    batch_size: int = 8
    steps: int = 2000
    lr: float = 1e-3
    weight_decay: float = 1e-4
    warmup_steps: int = 50
    n_branches: int = 4
    width: int = 32
    branch_width: int | None = None
    seed: int = 0
    val_fraction: float = 0.1
    val_tiles: int = 64
    eval_every: int = 100
    pos_weight: float = 1.0
    dice_weight: float = 0.0
    augment: bool = True
    device: str = "cpu"
    num_workers: int = 0
    apix: float | None = None
    diameter_A: tuple[float, float] | None = None
    norm_k: float = 3.0
    stride: int | None = None
    particle_px: float | None = None
    checkpoint_every: int = 0
    amp: bool | None = None
    init_trunk: str | None = None
    init_from: str | None = None
    max_picks_per_empty: float = 1.0


#: settings a resumed run may change (they do not change what is computed, or only its rounding;
#: ``max_picks_per_empty`` only the calibration after training)
RESUME_MAY_CHANGE = ("num_workers", "checkpoint_every", "device", "amp", "init_trunk", "init_from",
                     "max_picks_per_empty")


def make_loss(pos_weight: float = 1.0, dice_weight: float = 0.0) -> Callable:
    """Loss ``f(logits (b,1,h,w), target (b,1,h,w)) -> scalar``: BCE-with-logits + Dice.

    ``target`` is 0 (background) or 1 (particle); pixels at
    :data:`pixer.labels.discs.IGNORE` are left out of both terms (the BCE is
    their mean over the other pixels).
    """

    def loss_fn(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        pw = torch.tensor(pos_weight, dtype=logits.dtype, device=logits.device)
        keep = target != IGNORE
        if bool(keep.all()):
            loss = F.binary_cross_entropy_with_logits(logits, target, pos_weight=pw)
        else:
            target = target * keep
            per_pixel = F.binary_cross_entropy_with_logits(logits, target, pos_weight=pw, reduction="none")
            loss = (per_pixel * keep).sum() / keep.sum().clamp(min=1)
        if dice_weight > 0:
            p = torch.sigmoid(logits) * keep
            inter = (p * target).sum()
            loss = loss + dice_weight * (1 - (2 * inter + 1) / (p.sum() + target.sum() + 1))
        return loss

    return loss_fn


def warmup_cosine(step: int, warm: int, total: int) -> float:
    """LR factor at ``step``: linear warm-up over ``warm`` steps, then cosine decay to 0 at ``total``."""
    if step < warm:
        return (step + 1) / warm
    return 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warm) / max(1, total - warm))))


def init_from_model(model: AtrousSegNet, model_dir: str | Path) -> dict:
    """Copy every weight (and BatchNorm statistic) of a saved segmentation model into ``model``.

    Returns the source's ``config.json``; a PixerError names the folder when the
    architectures differ.
    """
    source, cfg = load_model(model_dir, device="cpu")
    if source.arch_args() != model.arch_args():
        raise PixerError(f"{model_dir}: its architecture {source.arch_args()} differs from the one to train "
                         f"{model.arch_args()}: use its --width and --branches")
    model.load_state_dict(source.state_dict())
    return cfg


def build_training(config: TrainConfig, device: str | None = None, cross_rank_bn: bool = False,
                   ) -> tuple[AtrousSegNet, torch.optim.Optimizer, object]:  # fmt: skip
    """Seeded model, AdamW optimiser and warm-up + cosine LR scheduler (per step).

    ``device`` overrides ``config.device``; ``cross_rank_bn`` swaps BatchNorm for
    its cross-rank version (:func:`pixer.train.distributed.sync_batchnorm`);
    ``config.init_trunk`` loads a classifier's trunk, ``config.init_from`` a
    whole segmentation model.
    """
    device = device or config.device
    torch.manual_seed(config.seed)
    model = AtrousSegNet(n_branches=config.n_branches, width=config.width, branch_width=config.branch_width)
    if config.init_trunk:
        init_trunk(model, config.init_trunk)
    if config.init_from:
        init_from_model(model, config.init_from)
    model = model.to(device)
    if cross_rank_bn:
        model = sync_batchnorm(model, device)
    opt = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    warm = max(0, min(config.warmup_steps, config.steps // 10))
    factor = functools.partial(warmup_cosine, warm=warm, total=max(1, config.steps))
    return model, opt, torch.optim.lr_scheduler.LambdaLR(opt, factor)


def train_step(model: torch.nn.Module, optimizer: torch.optim.Optimizer, scheduler: object,
               x: torch.Tensor, y: torch.Tensor, loss_fn: Callable, amp: bool = False) -> float:  # fmt: skip
    """One optimiser step on a batch ``x, y`` of shape ``(b, 1, t, t)``; returns the loss.

    ``amp``: forward pass under bf16 autocast (CUDA); the loss is computed in float32.
    """
    model.train()
    optimizer.zero_grad(set_to_none=True)
    with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=amp):
        logits = model(x)
    loss = loss_fn(logits.float(), y)
    loss.backward()
    optimizer.step()
    scheduler.step()
    return float(loss.detach())


@torch.no_grad()
def evaluate(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, loss_fn: Callable,
             batch_size: int = 8) -> tuple[float, float]:  # fmt: skip
    """Loss and IoU at probability 0.5 (logit > 0) over all pixels of ``(n, 1, t, t)`` tiles.

    IoU = |pred ∩ true| / |pred ∪ true| pooled over every tile (1.0 if both empty);
    pixels labelled :data:`pixer.labels.discs.IGNORE` count in neither.
    """
    model.eval()
    device = next(model.parameters()).device
    inter = union = 0
    loss = 0.0
    for i in range(0, len(x), batch_size):
        xb, yb = x[i : i + batch_size].to(device), y[i : i + batch_size].to(device)
        logits = model(xb)
        loss += float(loss_fn(logits, yb)) * len(xb)
        keep = yb != IGNORE
        pred, true = (logits > 0) & keep, (yb > 0.5) & keep
        inter += int((pred & true).sum())
        union += int((pred | true).sum())
    return loss / max(1, len(x)), (inter / union if union else 1.0)


def train_segmentation(samples: Sequence[Sample], out_dir: str | Path, config: TrainConfig | None = None,
                       progress: bool = True, resume: bool = False, stop_after: int | None = None,
                       calibration_negatives: Sequence[Sample] = ()) -> dict:  # fmt: skip
    """Train :class:`AtrousSegNet` on prepared images and binary labels (one process or DDP).

    Parameters
    ----------
    samples
        ``[(image (h, w) float32 prepared at the target pixel size, label (h, w) uint8), ...]``;
        every rank passes the same samples.
    out_dir
        Folder for ``model.pt``, ``config.json``, ``train_log.csv``, ``train_curve.png``
        and ``checkpoint.pt``.
    config
        :class:`TrainConfig` (defaults if None).
    progress
        Show a tqdm bar (rank 0).
    resume
        Continue from ``out_dir/checkpoint.pt`` (same config; device, workers,
        amp and checkpoint interval may change); without one, start afresh.
    stop_after
        Stop after this step with a checkpoint and no model (an interruption
        that a later ``resume`` continues).
    calibration_negatives
        Extra micrographs with empty labels (never trained on), added to the
        held-out ones when the pick threshold is calibrated, so that it keeps
        them clean (:func:`pixer.train.calibrate.calibrate_pick_threshold`).

    Returns
    -------
    dict
        ``val_iou``, ``val_loss`` (final), ``best_val_iou``, ``best_step``,
        ``train_loss`` (mean of the last log window), ``steps``, ``seconds``,
        ``tiles_per_s`` (this run, all ranks), ``n_params``, ``n_train``,
        ``n_val``, ``val_held_out``, ``rank``, ``world_size``,
        ``ddp_max_param_diff`` (largest parameter difference between ranks),
        ``resumed_from``, ``amp``. Stopped early: ``stopped_at``, ``rank``,
        ``world_size`` only. The saved weights are those after the last step.
    """
    config = config or TrainConfig()
    if not samples:
        raise ValueError("no training samples")
    for k, (im, lb) in enumerate(samples):
        if np.ndim(im) != 2 or np.shape(im) != np.shape(lb):
            raise ValueError(f"sample {k}: image {np.shape(im)} and label {np.shape(lb)} must be equal 2-D shapes")
    env, device, created = setup(config.device)
    try:
        metrics = _train(samples, Path(out_dir), config, env, device, progress, resume, stop_after,
                         list(calibration_negatives))
    except BaseException:
        cleanup(created, wait=False)
        raise
    cleanup(created)
    return metrics


def _train(samples: Sequence[Sample], out_dir: Path, config: TrainConfig, env: DistEnv, device: str,
           progress: bool, resume: bool, stop_after: int | None, negatives: list[Sample]) -> dict:  # fmt: skip
    rank, world = env.rank, env.world_size
    if config.batch_size % world:
        raise PixerError(f"batch size {config.batch_size} is not a multiple of the {world} processes")
    if rank == 0:
        out_dir.mkdir(parents=True, exist_ok=True)
    train_idx, val_idx = split_samples(len(samples), config.val_fraction, config.seed)
    train_set = TileDataset([samples[i] for i in train_idx], config.tile, config.steps * config.batch_size,
                            config.seed, config.augment)  # fmt: skip
    xv, yv = validation_tiles([samples[i] for i in val_idx], config.tile, config.val_tiles) if rank == 0 else (None, None)
    model, opt, sched = build_training(config, device, cross_rank_bn=world > 1)
    amp = bool(config.amp if config.amp is not None else True) and torch.device(device).type == "cuda"
    loss_fn = make_loss(config.pos_weight, config.dice_weight)
    ckpt_path = out_dir / ckpt_io.CHECKPOINT
    cfg_dict = asdict(config)
    start, book, rng = 0, dict(rows=[], windows=[[]], best=[-1.0, 0]), None
    if resume and ckpt_path.is_file():
        ckpt = ckpt_io.load_checkpoint(ckpt_path)
        ckpt_io.check_config(ckpt_path, ckpt["config"], cfg_dict, ignore=RESUME_MAY_CHANGE)
        start, book, rng = ckpt_io.restore(ckpt, model, opt, sched), ckpt["state"], ckpt_io.rank_rng(ckpt, rank)
    elif resume and rank == 0:
        print(f"pixer train: {ckpt_path} not found: starting from step 0", flush=True)
    rows, best = book["rows"], tuple(book["best"])
    window = list(book["windows"][rank] if rank < len(book["windows"]) else book["windows"][0])
    inner = model
    if world > 1:
        model = torch.nn.parallel.DistributedDataParallel(model, device_ids=[device] if device.startswith("cuda")
                                                          else None)  # fmt: skip
    sampler = ShardSampler(len(train_set), rank, world, start * config.batch_size)
    loader = torch.utils.data.DataLoader(
        train_set, batch_size=config.batch_size // world, sampler=sampler, num_workers=config.num_workers,
        drop_last=True, pin_memory=device.startswith("cuda"), generator=torch.Generator().manual_seed(config.seed),
        persistent_workers=False)  # fmt: skip
    log_rank(env, "pixer train", f"device {device}, {config.batch_size // world} tiles per step, steps {start + 1}-{config.steps}")
    if rng is not None:
        ckpt_io.set_rng_state(rng)
    step, t0 = start, time.perf_counter()
    bar = tqdm(total=config.steps, initial=start, desc="train", disable=not progress or rank != 0, leave=False)
    for x, y in loader if start < config.steps else ():
        step += 1
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        window.append(train_step(model, opt, sched, x, y, loss_fn, amp))
        bar.update(1)
        if step % config.eval_every == 0 or step == config.steps:
            loss = mean_over_ranks(window, device)
            if rank == 0:
                val_loss, val_iou = evaluate(inner, xv, yv, loss_fn, config.batch_size)
                rows.append(dict(step=step, loss=loss, val_loss=val_loss, val_iou=val_iou, lr=sched.get_last_lr()[0]))
                best = max(best, (val_iou, step), key=lambda b: b[0])
                bar.set_postfix(loss=f"{loss:.3f}", val_iou=f"{val_iou:.3f}")
                write_log(out_dir / "train_log.csv", rows, ("loss", "val_loss", "val_iou", "lr"))
            window = []
        stopping = stop_after is not None and step >= stop_after
        if (config.checkpoint_every and step % config.checkpoint_every == 0) or stopping:
            per_rank = gather_objects((ckpt_io.rng_state(), window))
            if rank == 0:
                ckpt_io.save_checkpoint(ckpt_path, step, inner, opt, sched, cfg_dict, [r for r, _ in per_rank],
                                        dict(rows=rows, windows=[w for _, w in per_rank], best=list(best)))
        if stopping:
            break
    bar.close()
    seconds = time.perf_counter() - t0
    log_rank(env, "pixer train", f"{step - start} steps, {(step - start) * config.batch_size // world} tiles in {seconds:.1f} s")
    if step < config.steps:
        return dict(stopped_at=step, rank=rank, world_size=world)
    drift = max_rank_difference(inner)
    if rank != 0:
        return dict(rank=rank, world_size=world, ddp_max_param_diff=drift)
    last = rows[-1] if rows else dict(loss=float("nan"), val_loss=float("nan"), val_iou=float("nan"))
    metrics = dict(
        val_iou=last["val_iou"], val_loss=last["val_loss"], best_val_iou=best[0], best_step=best[1],
        train_loss=last["loss"], steps=config.steps, seconds=seconds,
        tiles_per_s=(step - start) * config.batch_size / max(seconds, 1e-9), n_params=n_parameters(inner),
        n_train=len(train_idx), n_val=len(val_idx), val_held_out=len(samples) >= 2 and config.val_fraction > 0,
        rank=rank, world_size=world, ddp_max_param_diff=drift, resumed_from=start if resume else None, amp=amp,
    )  # fmt: skip
    if start >= config.steps and (out_dir / "config.json").is_file():
        # rerun of a finished run (e.g. to recalibrate): keep the timing of the run that trained
        done = json.loads((out_dir / "config.json").read_text()).get("metrics", {})
        metrics.update({k: done[k] for k in ("seconds", "tiles_per_s", "resumed_from") if k in done})
    meta = dict(
        apix=config.apix, diameter_A=list(config.diameter_A) if config.diameter_A else None,
        tile=config.tile, stride=config.stride or config.tile // 2, norm_k=config.norm_k,
        particle_px=config.particle_px, seed=config.seed, train=cfg_dict, metrics=metrics,
    )  # fmt: skip
    if metrics["val_held_out"] and config.particle_px:
        # the score cut `pixer pick --threshold auto` uses with this model (see pixer.train.calibrate)
        calib = calibrate_pick_threshold(inner, [samples[i] for i in val_idx] + negatives, float(config.particle_px),
                                         device=device, max_picks_per_empty=config.max_picks_per_empty)  # fmt: skip
        if calib is not None:
            meta["pick_threshold"] = calib
            log_rank(env, "pixer train", f"pick threshold {calib['value']:.3f} (F1 {calib['f1']:.3f} on "
                                         f"{calib['n_true']} particles of {calib['n_micrographs']} held-out micrographs)")
    save_model(out_dir, inner.cpu(), meta)
    if rows:
        plot_curve(out_dir / "train_curve.png", rows)
    return metrics

