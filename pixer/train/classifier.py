"""Train the crop classifier (particle / interference / noise) that initialises the segmentation trunk.

Crops are cut from micrographs prepared exactly as for segmentation training
(binned so a particle spans ``particle_px`` pixels, normalised), with a box of
``box_factor × particle_px`` (:func:`pixer.models.classifier.crop_box`):

- **particle**: centred on each particle (refined origins applied);
- **interference**: centred on random pixels of an interference mask (the
  simulator's ``truth/<stem>_junk.mrc`` or a mask the user drew), at least
  half a diameter from any particle centre, with at least ``min_junk_fraction``
  of the box inside the mask; and on **negatives**, picks known not to be
  particles (those 2D classification rejected, or a picker's picks that
  the labels do not confirm), at least half a diameter from every particle
  centre: the false positives the classifier is there to remove;
- **noise**: centred on random pixels at least one diameter from every
  particle centre and whose box holds no interference.

Every class is drawn over the whole micrograph, its edges included, where the
box leaves the image and is zero-padded (:func:`pixer.models.classifier.extract_crops`),
as it is for candidates at the edge when picking. (Interference and noise
used to be drawn only where the box fits, while particles came from
anywhere: the classifier learnt padding as a sign of a particle and passed
debris at the edges, P(particle) ≈ 1 for most padded crops.)

Training draws class-balanced batches (a class, then an example of it, with a
random flip / 90° rotation), all from ``default_rng([seed, step])``; the
validation set is the crops of held-out micrographs. Recorded: validation
accuracy, per-class recall and the confusion matrix (rows = true class,
columns = predicted) in ``classifier.json``; ``classifier_log.csv`` and
``classifier_curve.png`` hold the curve.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from scipy import ndimage as ndi
from tqdm.auto import tqdm

from pixer.errors import PixerError
from pixer.io.micrographs import read_micrograph
from pixer.models.classifier import (
    CLASS_NAMES,
    CropClassifier,
    crop_box,
    extract_crops,
    save_classifier,
)
from pixer.train.log import plot_curve, write_log
from pixer.train.prepare import DEFAULT_PARTICLE_PX, label_to_grid, prepared_micrographs
from pixer.train.segmentation import warmup_cosine

PARTICLE, INTERFERENCE, NOISE = range(3)


@dataclass
class ClassifierTrainConfig:
    """Crop and training settings (saved under ``classifier.json["train"]``).

    Attributes
    ----------
    particle_px : float
        Particle diameter in px at the model pixel size.
    box_factor : float
        Crop side / particle diameter (1.5-2).
    noise_per_particle, junk_per_particle : float
        Noise / interference crops drawn per particle crop of a micrograph
        (at least one each where there is room).
    min_junk_fraction : float
        Least fraction of an interference crop inside the mask.
    centre_jitter : float
        Particle crops are centred within ``± centre_jitter × particle_px`` of
        the true centre (uniform), as picks are at inference.
    width, dropout
        Architecture (see :class:`pixer.models.classifier.ClassifierConfig`).
    steps, batch_size, lr, weight_decay, warmup_steps, eval_every
        Optimisation: AdamW, linear warm-up then cosine decay, validation every
        ``eval_every`` steps (and at the end).
    seed, val_fraction, augment, device
        As for segmentation training.
    apix, diameter_A, norm_k
        Recorded for inference: pixel size of the crops (Å/px), particle
        diameter (Å), normalisation clip.
    """

    particle_px: float = DEFAULT_PARTICLE_PX
    box_factor: float = 1.75
    noise_per_particle: float = 1.0
    junk_per_particle: float = 1.0
    min_junk_fraction: float = 0.25
    centre_jitter: float = 0.15
    width: int = 32
    dropout: float = 0.2
    steps: int = 500
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 1e-4
    warmup_steps: int = 20
    eval_every: int = 50
    seed: int = 0
    val_fraction: float = 0.2
    augment: bool = True
    device: str = "cpu"
    apix: float | None = None
    diameter_A: float | None = None
    norm_k: float = 3.0


def micrograph_crops(image: np.ndarray, centres: np.ndarray, junk: np.ndarray | None,
                     config: ClassifierTrainConfig, rng: np.random.Generator,
                     negatives: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """Particle, interference and noise crops of one prepared micrograph.

    Parameters
    ----------
    image
        ``(h, w)`` float32, prepared at the model pixel size.
    centres
        ``(n, 2)`` particle centres ``[x, y]`` in image px.
    junk
        ``(h, w)`` 0/1 interference mask on the image grid, or None.
    config
        Box and counts.
    rng
        Source of the interference / noise positions.
    negatives
        ``(k, 2)`` centres ``[x, y]`` (image px) of picks that are not
        particles: interference crops (those within half a diameter of a
        particle centre, or outside the image, are skipped).

    Returns
    -------
    crops
        ``(m, box, box)`` float32.
    labels
        ``(m,)`` int64 class indices (:data:`pixer.models.classifier.CLASS_NAMES`).
    """
    box, d = crop_box(config.particle_px, config.box_factor), float(config.particle_px)
    h, w = image.shape
    centres = np.asarray(centres, np.float64).reshape(-1, 2)
    inside = (centres[:, 0] >= 0) & (centres[:, 0] < w) & (centres[:, 1] >= 0) & (centres[:, 1] < h)
    centres = centres[inside]
    seeds = np.ones((h, w), bool)
    ij = np.rint(centres[:, ::-1]).astype(int).clip(0, [h - 1, w - 1])
    seeds[ij[:, 0], ij[:, 1]] = False
    dist = ndi.distance_transform_edt(seeds) if len(centres) else np.full((h, w), np.inf)
    junk = np.zeros((h, w), bool) if junk is None else np.asarray(junk) > 0
    junk_frac = ndi.uniform_filter(junk.astype(np.float32), box, mode="constant")
    n = max(1, len(centres))
    jitter = config.centre_jitter * d
    picks = [(centres + rng.uniform(-jitter, jitter, centres.shape) if jitter > 0 else centres, PARTICLE)]
    for cls, allowed, ratio in (
        (INTERFERENCE, junk & (junk_frac >= config.min_junk_fraction) & (dist > d / 2),
         config.junk_per_particle),
        (NOISE, (junk_frac < 1e-6) & (dist >= d), config.noise_per_particle),
    ):  # fmt: skip
        ys, xs = np.nonzero(allowed)
        k = min(len(ys), max(1, int(round(ratio * n))))
        sel = rng.choice(len(ys), size=k, replace=False) if k else np.zeros(0, int)
        picks.append((np.stack([xs[sel], ys[sel]], 1).astype(np.float64), cls))
    if negatives is not None and len(negatives):
        neg = np.asarray(negatives, np.float64).reshape(-1, 2)
        ij = np.rint(neg[:, ::-1]).astype(int)
        ok = (ij[:, 0] >= 0) & (ij[:, 0] < h) & (ij[:, 1] >= 0) & (ij[:, 1] < w)
        ok[ok] = dist[ij[ok, 0], ij[ok, 1]] > d / 2
        picks.append((neg[ok], INTERFERENCE))
    crops = np.concatenate([extract_crops(image, c, box) for c, _ in picks])
    labels = np.concatenate([np.full(len(c), cls, np.int64) for c, cls in picks])
    return crops, labels


def _centres(rows: pd.DataFrame, mic_apix: float, apix: float) -> np.ndarray:
    """Particle centres ``(n, 2)`` on the prepared grid: ``(x − origin_x_A / mic_apix) · mic_apix / apix``."""
    xy = rows[["x", "y"]].to_numpy(np.float64).copy()
    for j, name in enumerate(("origin_x_A", "origin_y_A")):
        if name in rows.columns:
            o = rows[name].to_numpy(np.float64)
            xy[:, j] -= np.where(np.isfinite(o), o, 0.0) / mic_apix
    return xy * (mic_apix / apix)


def _junk_mask(junk_dir: Path | None, path: Path) -> Path | None:
    if junk_dir is None:
        return None
    for name in (f"{path.stem}_junk.mrc", f"{path.stem}.mrc"):
        if (junk_dir / name).is_file():
            return junk_dir / name
    return None


def classifier_crops(micrographs: Sequence[Path], picks: pd.DataFrame, diameter_A: float,
                     config: ClassifierTrainConfig, apix: float | None = None, junk_masks: str | Path | None = None,
                     progress: bool = True,
                     negatives: pd.DataFrame | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:  # fmt: skip
    """Crops of every micrograph (see the module docstring).

    Parameters
    ----------
    micrographs
        Micrograph files, matched to the picks' ``micrograph`` names.
    picks
        Particles table in micrograph px.
    diameter_A
        Particle diameter, Å.
    config
        ``particle_px``, box and counts, ``norm_k``, ``seed``.
    apix
        Micrograph pixel size, Å/px (default: the MRC header, else the picks' ``apix``).
    junk_masks
        Folder of interference masks: ``<stem>_junk.mrc`` (as the simulator's
        ``truth/``) or ``<stem>.mrc``, on the micrograph's grid (or any grid of
        the same field of view); micrographs without one give no interference crops.
    negatives
        Picks that are not particles (``micrograph``, ``x``, ``y`` in
        micrograph px, matched to the files as ``picks`` are): interference crops.

    Returns
    -------
    crops
        ``(n, box, box)`` float32.
    labels
        ``(n,)`` int64.
    groups
        ``(n,)`` int64 micrograph index of each crop (for the validation split).
    apix_used
        Pixel size of the crops, Å/px (the largest over micrographs).
    """
    junk_dir = Path(junk_masks) if junk_masks is not None else None
    if junk_dir is not None and not junk_dir.is_dir():
        raise PixerError(f"{junk_dir}: interference-mask folder not found")
    out, used = [], []
    table = picks.assign(_negative=False)
    if negatives is not None and len(negatives):
        table = pd.concat([table, negatives.assign(_negative=True)], ignore_index=True)
    prepared = prepared_micrographs(micrographs, table, diameter_A, config.particle_px, apix, config.norm_k,
                                    progress, desc="crops")  # fmt: skip
    for g, item in enumerate(prepared):
        path, rows, mic, mic_apix = item.path, item.rows, item.mic, item.mic_apix
        image, apix_used = item.image, item.apix_used
        mask_path = _junk_mask(junk_dir, Path(path))
        junk = None
        if mask_path is not None:
            mask = read_micrograph(mask_path, apix=1.0, blank_ok=True).data > 0
            junk = label_to_grid(mask, mic.data.shape, mic_apix, apix_used, image.shape)
        rng = np.random.default_rng([config.seed, 104729, g])
        neg = rows["_negative"].to_numpy(bool)
        crops, labels = micrograph_crops(image, _centres(rows[~neg], mic_apix, apix_used), junk, config, rng,
                                         negatives=_centres(rows[neg], mic_apix, apix_used) if neg.any() else None)
        out.append((crops, labels, np.full(len(labels), g, np.int64)))
        used.append(apix_used)
    crops, labels, groups = (np.concatenate(a) for a in zip(*out, strict=True))
    return crops, labels, groups, float(max(used))


def _augment(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    k, flip = int(rng.integers(4)), bool(rng.integers(2))
    x = np.rot90(x, k)
    return x[:, ::-1] if flip else x


def balanced_batch(crops: np.ndarray, labels: np.ndarray, size: int, rng: np.random.Generator,
                   augment: bool = True) -> tuple[torch.Tensor, torch.Tensor]:  # fmt: skip
    """``size`` crops: a uniformly drawn present class, then one of its crops; ``(b, 1, s, s)``, ``(b,)``."""
    present = [c for c in range(len(CLASS_NAMES)) if (labels == c).any()]
    by_class = {c: np.flatnonzero(labels == c) for c in present}
    cls = rng.choice(present, size=size)
    idx = np.array([rng.choice(by_class[c]) for c in cls])
    xs = [_augment(crops[i], rng) if augment else crops[i] for i in idx]
    x = torch.from_numpy(np.ascontiguousarray(np.stack(xs), dtype=np.float32))[:, None]
    return x, torch.from_numpy(labels[idx].astype(np.int64))


@torch.no_grad()
def evaluate_classifier(model: CropClassifier, crops: np.ndarray, labels: np.ndarray,
                        batch_size: int = 256) -> tuple[float, float, np.ndarray]:  # fmt: skip
    """Loss, accuracy and confusion matrix ``(3, 3)`` int (rows = true, columns = predicted) on ``(n, s, s)`` crops."""
    model.eval()
    device = next(model.parameters()).device
    k = len(CLASS_NAMES)
    conf = np.zeros((k, k), np.int64)
    loss = 0.0
    for i in range(0, len(crops), batch_size):
        x = torch.from_numpy(crops[i : i + batch_size])[:, None].to(device)
        y = torch.from_numpy(labels[i : i + batch_size]).to(device)
        logits = model(x)
        loss += float(F.cross_entropy(logits, y, reduction="sum"))
        np.add.at(conf, (y.cpu().numpy(), logits.argmax(1).cpu().numpy()), 1)
    n = max(1, len(crops))
    return loss / n, float(np.trace(conf)) / n, conf


def _split_groups(groups: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    ids = np.unique(groups)
    if len(ids) < 2 or fraction <= 0:
        everything = np.ones(len(groups), bool)
        return everything, everything
    order = np.random.default_rng([seed, 7919]).permutation(ids)
    n_val = min(len(ids) - 1, max(1, int(round(fraction * len(ids)))))
    val = np.isin(groups, order[:n_val])
    return ~val, val


def train_classifier(crops: np.ndarray, labels: np.ndarray, groups: np.ndarray, out_dir: str | Path,
                     config: ClassifierTrainConfig | None = None, progress: bool = True) -> dict:  # fmt: skip
    """Train :class:`CropClassifier`; write ``classifier.pt``, ``classifier.json``, log CSV and curve PNG.

    Parameters
    ----------
    crops
        ``(n, box, box)`` float32 (:func:`classifier_crops`).
    labels
        ``(n,)`` int64 class indices.
    groups
        ``(n,)`` micrograph index per crop; held-out micrographs form the validation set.
    out_dir
        Classifier folder.
    config
        :class:`ClassifierTrainConfig`.
    progress
        tqdm bar.

    Returns
    -------
    dict
        ``val_accuracy``, ``val_loss``, ``confusion`` (list of lists), ``recall``
        (per class name), ``counts`` (crops per class name), ``n_train``,
        ``n_val``, ``val_held_out``, ``steps``, ``seconds``, ``crops_per_s``.
    """
    config = config or ClassifierTrainConfig()
    crops, labels = np.asarray(crops, np.float32), np.asarray(labels, np.int64)
    if len(crops) == 0 or not (labels == PARTICLE).any():
        raise PixerError("no particle crops to train the classifier on")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tr, va = _split_groups(np.asarray(groups), config.val_fraction, config.seed)
    torch.manual_seed(config.seed)
    model = CropClassifier(width=config.width, dropout=config.dropout).to(config.device)
    opt = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    warm = max(0, min(config.warmup_steps, config.steps // 10))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, functools.partial(warmup_cosine, warm=warm, total=config.steps))
    rows, window, t0 = [], [], time.perf_counter()
    for step in tqdm(range(1, config.steps + 1), desc="classifier", disable=not progress, leave=False):
        x, y = balanced_batch(crops[tr], labels[tr], config.batch_size, np.random.default_rng([config.seed, step]),
                              config.augment)  # fmt: skip
        model.train()
        opt.zero_grad(set_to_none=True)
        loss = F.cross_entropy(model(x.to(config.device)), y.to(config.device))
        loss.backward()
        opt.step()
        sched.step()
        window.append(float(loss.detach()))
        if step % config.eval_every == 0 or step == config.steps:
            val_loss, acc, conf = evaluate_classifier(model, crops[va], labels[va])
            rows.append(dict(step=step, loss=float(np.mean(window)), val_loss=val_loss, val_acc=acc,
                             lr=sched.get_last_lr()[0]))  # fmt: skip
            window = []
            write_log(out_dir / "classifier_log.csv", rows, ("loss", "val_loss", "val_acc", "lr"))
    seconds = time.perf_counter() - t0
    recall = {n: float(conf[i, i] / conf[i].sum()) if conf[i].sum() else None for i, n in enumerate(CLASS_NAMES)}
    metrics = dict(
        val_accuracy=acc, val_loss=val_loss, confusion=conf.tolist(), recall=recall,
        counts={n: int((labels == i).sum()) for i, n in enumerate(CLASS_NAMES)},
        n_train=int(tr.sum()), n_val=int(va.sum()), val_held_out=bool(not (tr & va).any()),
        steps=config.steps, seconds=seconds, crops_per_s=config.steps * config.batch_size / max(seconds, 1e-9),
    )  # fmt: skip
    meta = dict(class_names=list(CLASS_NAMES), crop=int(crops.shape[-1]), particle_px=config.particle_px,
                apix=config.apix, diameter_A=config.diameter_A, norm_k=config.norm_k, seed=config.seed,
                train=asdict(config), metrics=metrics, confusion_axes="rows: true class, columns: predicted")  # fmt: skip
    save_classifier(out_dir, model.cpu(), meta)
    plot_curve(out_dir / "classifier_curve.png", rows, score="val_acc", score_label="val accuracy")
    return metrics
