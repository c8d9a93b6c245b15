"""Training loop of the segmentation network on (image, label) pairs.

Inputs are micrographs already prepared at the model's pixel size
(:func:`pixer.data.preprocess.prepare`) and uint8 label images of the same
shape (e.g. :func:`pixer.labels.discs.disc_labels_for_picks`). Training draws
random ``tile × tile`` crops with flips / 90° rotations, minimises BCE-with-logits
(plus optional soft Dice) with AdamW and a warm-up + cosine learning-rate
schedule, and reports IoU at probability 0.5 on fixed tiles of held-out
micrographs.

Seams for later work: :class:`TileDataset` draws crop ``i`` from its own RNG
seeded by ``(seed, i)``, so any sampler (e.g. ``DistributedSampler``) or a
resumed run sees the same crops; :func:`build_training` and :func:`train_step`
are what a DDP wrapper needs. Runs are deterministic for a seed on CPU.

Outputs in ``out_dir``: ``model.pt`` + ``config.json``
(:func:`pixer.models.store.save_model`), ``train_log.csv`` (step, loss,
val_loss, val_iou, lr) and ``train_curve.png``, each written atomically.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from pixer.data.tiles import extract_tiles
from pixer.io.paths import atomic_path, write_text_atomic
from pixer.models.segmentation import AtrousSegNet, n_parameters
from pixer.models.store import save_model

Sample = tuple[np.ndarray, np.ndarray]


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
        DataLoader workers.
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


def _pad(a: np.ndarray, tile: int) -> np.ndarray:
    ph, pw = max(0, tile - a.shape[0]), max(0, tile - a.shape[1])
    return np.pad(a, ((0, ph), (0, pw))) if ph or pw else a


class TileDataset(torch.utils.data.Dataset):
    """Random training crops; item ``i`` is a pure function of ``(seed, i)``.

    Parameters
    ----------
    samples
        ``[(image (h, w) float32, label (h, w) uint8), ...]``; images smaller
        than ``tile`` are zero-padded (label 0).
    tile
        Crop size, px.
    length
        Number of items (``steps × batch_size`` for one pass).
    seed
        Base seed.
    augment
        Apply one of the 8 flips / 90° rotations.

    Items: ``(image (1, tile, tile) float32, label (1, tile, tile) float32)``.
    Micrographs are drawn with probability proportional to their area.
    """

    def __init__(self, samples: Sequence[Sample], tile: int, length: int, seed: int = 0,
                 augment: bool = True) -> None:  # fmt: skip
        self.images = [_pad(np.asarray(im, dtype=np.float32), tile) for im, _ in samples]
        self.labels = [_pad(np.asarray(lb, dtype=np.uint8), tile) for _, lb in samples]
        area = np.array([im.size for im in self.images], dtype=np.float64)
        self.p = area / area.sum()
        self.tile, self.length, self.seed, self.augment = int(tile), int(length), int(seed), augment

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        rng = np.random.default_rng([self.seed, int(i)])
        j = int(rng.choice(len(self.images), p=self.p))
        im, lb = self.images[j], self.labels[j]
        t = self.tile
        y0 = int(rng.integers(0, im.shape[0] - t + 1))
        x0 = int(rng.integers(0, im.shape[1] - t + 1))
        im, lb = im[y0 : y0 + t, x0 : x0 + t], lb[y0 : y0 + t, x0 : x0 + t]
        if self.augment:
            k, flip = int(rng.integers(4)), bool(rng.integers(2))
            im, lb = np.rot90(im, k), np.rot90(lb, k)
            if flip:
                im, lb = im[:, ::-1], lb[:, ::-1]
        im = torch.from_numpy(np.ascontiguousarray(im, dtype=np.float32))[None]
        lb = torch.from_numpy(np.ascontiguousarray(lb, dtype=np.float32))[None]
        return im, lb


def make_loss(pos_weight: float = 1.0, dice_weight: float = 0.0) -> Callable:
    """Loss ``f(logits (b,1,h,w), target (b,1,h,w) in {0,1}) -> scalar``: BCE-with-logits + Dice."""

    def loss_fn(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        pw = torch.tensor(pos_weight, dtype=logits.dtype, device=logits.device)
        loss = F.binary_cross_entropy_with_logits(logits, target, pos_weight=pw)
        if dice_weight > 0:
            p = torch.sigmoid(logits)
            inter = (p * target).sum()
            loss = loss + dice_weight * (1 - (2 * inter + 1) / (p.sum() + target.sum() + 1))
        return loss

    return loss_fn


def build_training(config: TrainConfig) -> tuple[AtrousSegNet, torch.optim.Optimizer, object]:
    """Seeded model, AdamW optimiser and warm-up + cosine LR scheduler (per step)."""
    torch.manual_seed(config.seed)
    model = AtrousSegNet(
        n_branches=config.n_branches, width=config.width, branch_width=config.branch_width
    ).to(config.device)
    opt = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    warm = max(0, min(config.warmup_steps, config.steps // 10))
    total = max(1, config.steps)

    def factor(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        return 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warm) / max(1, total - warm))))

    return model, opt, torch.optim.lr_scheduler.LambdaLR(opt, factor)


def train_step(model: torch.nn.Module, optimizer: torch.optim.Optimizer, scheduler: object,
               x: torch.Tensor, y: torch.Tensor, loss_fn: Callable) -> float:  # fmt: skip
    """One optimiser step on a batch ``x, y`` of shape ``(b, 1, t, t)``; returns the loss."""
    model.train()
    optimizer.zero_grad(set_to_none=True)
    loss = loss_fn(model(x), y)
    loss.backward()
    optimizer.step()
    scheduler.step()
    return float(loss.detach())


def _split(n: int, fraction: float, seed: int) -> tuple[list[int], list[int]]:
    if n < 2 or fraction <= 0:
        return list(range(n)), list(range(n))
    order = np.random.default_rng([seed, 7919]).permutation(n)
    n_val = min(n - 1, max(1, int(round(fraction * n))))
    return sorted(order[n_val:].tolist()), sorted(order[:n_val].tolist())


def _val_tiles(samples: Sequence[Sample], tile: int, cap: int) -> tuple[torch.Tensor, torch.Tensor]:
    xs, ys = [], []
    for im, lb in samples:
        xs.append(extract_tiles(np.asarray(im, np.float32), tile, tile)[0])
        ys.append(extract_tiles(np.asarray(lb, np.float32), tile, tile)[0])
    x, y = np.concatenate(xs), np.concatenate(ys)
    if len(x) > cap:
        keep = np.linspace(0, len(x) - 1, cap).round().astype(int)
        x, y = x[keep], y[keep]
    return torch.from_numpy(x)[:, None], torch.from_numpy(y)[:, None]


@torch.no_grad()
def evaluate(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, loss_fn: Callable,
             batch_size: int = 8) -> tuple[float, float]:  # fmt: skip
    """Loss and IoU at probability 0.5 (logit > 0) over all pixels of ``(n, 1, t, t)`` tiles.

    IoU = |pred ∩ true| / |pred ∪ true| pooled over every tile (1.0 if both empty).
    """
    model.eval()
    device = next(model.parameters()).device
    inter = union = 0
    loss = 0.0
    for i in range(0, len(x), batch_size):
        xb, yb = x[i : i + batch_size].to(device), y[i : i + batch_size].to(device)
        logits = model(xb)
        loss += float(loss_fn(logits, yb)) * len(xb)
        pred, true = logits > 0, yb > 0.5
        inter += int((pred & true).sum())
        union += int((pred | true).sum())
    return loss / max(1, len(x)), (inter / union if union else 1.0)


def _write_log(path: Path, rows: list[dict]) -> None:
    lines = ["step,loss,val_loss,val_iou,lr"]
    lines += [f"{r['step']},{r['loss']:.6g},{r['val_loss']:.6g},{r['val_iou']:.6g},{r['lr']:.6g}" for r in rows]
    write_text_atomic(path, "\n".join(lines) + "\n")


def _plot(path: Path, rows: list[dict]) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6, 3.5))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(111)
    steps = [r["step"] for r in rows]
    ax.plot(steps, [r["loss"] for r in rows], label="train loss")
    ax.plot(steps, [r["val_loss"] for r in rows], label="val loss")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax2 = ax.twinx()
    ax2.plot(steps, [r["val_iou"] for r in rows], "g.-", label="val IoU")
    ax2.set_ylabel("val IoU @ 0.5")
    ax2.set_ylim(0, 1)
    fig.legend(loc="upper center", ncol=3, fontsize="small")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100, format="png")


def train_segmentation(samples: Sequence[Sample], out_dir: str | Path, config: TrainConfig | None = None,
                       progress: bool = True) -> dict:  # fmt: skip
    """Train :class:`AtrousSegNet` on prepared images and binary labels.

    Parameters
    ----------
    samples
        ``[(image (h, w) float32 prepared at the target pixel size, label (h, w) uint8), ...]``.
    out_dir
        Folder for ``model.pt``, ``config.json``, ``train_log.csv``, ``train_curve.png``.
    config
        :class:`TrainConfig` (defaults if None).
    progress
        Show a tqdm bar.

    Returns
    -------
    dict
        ``val_iou``, ``val_loss`` (final), ``best_val_iou``, ``best_step``,
        ``train_loss`` (mean of the last log window), ``steps``, ``seconds``,
        ``tiles_per_s``, ``n_params``, ``n_train``, ``n_val``, ``val_held_out``.
        The saved weights are those after the last step.
    """
    config = config or TrainConfig()
    if not samples:
        raise ValueError("no training samples")
    for k, (im, lb) in enumerate(samples):
        if np.ndim(im) != 2 or np.shape(im) != np.shape(lb):
            raise ValueError(f"sample {k}: image {np.shape(im)} and label {np.shape(lb)} must be equal 2-D shapes")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    train_idx, val_idx = _split(len(samples), config.val_fraction, config.seed)
    train_set = TileDataset([samples[i] for i in train_idx], config.tile, config.steps * config.batch_size,
                            config.seed, config.augment)  # fmt: skip
    xv, yv = _val_tiles([samples[i] for i in val_idx], config.tile, config.val_tiles)
    loader = torch.utils.data.DataLoader(train_set, batch_size=config.batch_size, shuffle=False,
                                         num_workers=config.num_workers, drop_last=True)  # fmt: skip
    model, opt, sched = build_training(config)
    loss_fn = make_loss(config.pos_weight, config.dice_weight)
    rows: list[dict] = []
    window: list[float] = []
    best = (-1.0, 0)
    t0 = time.perf_counter()
    bar = tqdm(total=config.steps, desc="train", disable=not progress, leave=False)
    for step, (x, y) in enumerate(loader, start=1):
        window.append(train_step(model, opt, sched, x.to(config.device), y.to(config.device), loss_fn))
        bar.update(1)
        if step % config.eval_every == 0 or step == config.steps:
            val_loss, val_iou = evaluate(model, xv, yv, loss_fn, config.batch_size)
            rows.append(dict(step=step, loss=float(np.mean(window)), val_loss=val_loss, val_iou=val_iou,
                             lr=sched.get_last_lr()[0]))  # fmt: skip
            window = []
            best = max(best, (val_iou, step), key=lambda b: b[0])
            bar.set_postfix(loss=f"{rows[-1]['loss']:.3f}", val_iou=f"{val_iou:.3f}")
            _write_log(out_dir / "train_log.csv", rows)
    bar.close()
    seconds = time.perf_counter() - t0
    last = rows[-1] if rows else dict(loss=float("nan"), val_loss=float("nan"), val_iou=float("nan"))
    metrics = dict(
        val_iou=last["val_iou"], val_loss=last["val_loss"], best_val_iou=best[0], best_step=best[1],
        train_loss=last["loss"], steps=config.steps, seconds=seconds,
        tiles_per_s=config.steps * config.batch_size / max(seconds, 1e-9), n_params=n_parameters(model),
        n_train=len(train_idx), n_val=len(val_idx), val_held_out=len(samples) >= 2 and config.val_fraction > 0,
    )  # fmt: skip
    train_args = asdict(config)
    meta = dict(
        apix=config.apix, diameter_A=list(config.diameter_A) if config.diameter_A else None,
        tile=config.tile, stride=config.stride or config.tile // 2, norm_k=config.norm_k,
        particle_px=config.particle_px, seed=config.seed, train=train_args, metrics=metrics,
    )  # fmt: skip
    save_model(out_dir, model.cpu(), meta)
    if rows:
        _plot(out_dir / "train_curve.png", rows)
    return metrics
