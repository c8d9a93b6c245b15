"""Self-training: adapt a picking model to a data set from its own picks, with no labels.

A model trained elsewhere (the general model, trained on simulations only) ranks
the particles of a new data set imperfectly. Self-training fits it to the data
set with what it already finds there:

1. the model picks a sample of the run's micrographs; the round's cut ``t`` is
   ``--threshold auto``'s. A model that stores its empty-micrograph background
   (the general model) must find particles significantly above it in the first
   round, at least ``min_particles`` per micrograph, else there is nothing to
   learn (:class:`NothingToLearn`: a run of empty micrographs, or data the
   model cannot read, is not self-trained on its junk);
2. **pseudo-labels**: label discs (as ``pixer train --coords``) at candidates
   scoring at least ``positive_fraction × t``; around candidates between
   ``ignore_fraction × t`` and that, a disc of ``ignore_radius`` diameters is
   :data:`pixer.labels.discs.IGNORE` (left out of the loss: likely particles
   the model is unsure of must not be taught as background); the rest is
   background;
3. the model is fine-tuned on them (``steps``, learning rate ``lr``) and
   calibrated on its held-out sample micrographs as ``pixer train`` does;
4. repeated ``rounds`` times, each round from the previous round's model.

The adapted model is an ordinary model folder (``config.json["adapt"]`` records
the rounds); ``pixer pick --model`` runs it on every micrograph.

Units: ``diameter_A`` in Å; pseudo-labels live on the binned grid the model
sees (the particle spans ``particle_px`` pixels).
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from pixer.data.preprocess import prepare
from pixer.errors import PixerError
from pixer.io.micrographs import read_micrograph
from pixer.labels.discs import DEFAULT_FRACTION, disc_labels, mark_ignored
from pixer.models.general import resolve_model
from pixer.models.store import load_model
from pixer.pick.localmax import grid_local_maxima
from pixer.pick.picker import model_apix, probability_map
from pixer.pick.search import background_of, sample_evenly
from pixer.pick.threshold import CANDIDATE_FLOOR, auto_threshold, null_particles, null_threshold
from pixer.train.segmentation import TrainConfig, train_segmentation


class NothingToLearn(PixerError):
    """The starting model finds no particles in the micrographs (nothing to self-train on)."""


@dataclass
class AdaptConfig:
    """Self-training settings.

    Attributes
    ----------
    rounds
        Pick → pseudo-label → fine-tune rounds.
    steps
        Optimiser steps per round.
    positive_fraction
        Candidates scoring at least this × the round's cut are particles.
    ignore_fraction
        Candidates scoring at least this × the cut (and below the particles')
        are left out of the loss; 0 leaves every candidate above the floor out,
        ``positive_fraction`` none.
    ignore_radius
        Radius of the left-out discs, in particle diameters.
    max_micrographs
        Most micrographs to train on (spread over the run).
    min_particles
        With a model that stores its background: fewest particles per
        micrograph it must find above it in the first round (else
        :class:`NothingToLearn`). A few junk picks that pass for particles
        (small debris on empty micrographs) must not become the labels.
    lr, batch_size, tile, seed, device
        As :class:`pixer.train.segmentation.TrainConfig`.
    """

    rounds: int = 2
    steps: int = 300
    positive_fraction: float = 0.5
    ignore_fraction: float = 0.2
    ignore_radius: float = 0.5
    max_micrographs: int = 16
    min_particles: float = 10.0
    lr: float = 5e-4
    batch_size: int = 8
    tile: int = 128
    seed: int = 0
    device: str = "cpu"

    def __post_init__(self) -> None:
        if self.rounds < 1 or self.steps < 1 or self.max_micrographs < 1:
            raise PixerError("self-training needs at least one round, one step and one micrograph")
        if not 0 <= self.ignore_fraction <= self.positive_fraction:
            raise PixerError(f"the ignore fraction ({self.ignore_fraction:g}) must lie between 0 and the positive "
                             f"fraction ({self.positive_fraction:g})")


def pseudo_label(shape: tuple[int, int], xy: np.ndarray, scores: np.ndarray, cut: float, particle_px: float,
                 config: AdaptConfig) -> tuple[np.ndarray, int, int]:  # fmt: skip
    """Label image of one micrograph from its candidates.

    Parameters
    ----------
    shape
        ``(h, w)`` of the binned micrograph, pixels.
    xy, scores
        ``(n, 2)`` candidate centres ``[x, y]`` (binned pixels) and their ``(n,)`` scores.
    cut
        The round's pick threshold.
    particle_px
        Particle diameter on this grid, pixels.

    Returns
    -------
    label
        ``(h, w)`` uint8: 1 in a disc of :data:`pixer.labels.discs.DEFAULT_FRACTION`
        × the radius at each pseudo-particle, :data:`pixer.labels.discs.IGNORE`
        around the uncertain candidates, 0 elsewhere.
    n_particles, n_ignored
        Candidates labelled particle, and left out.
    """
    xy = np.asarray(xy, dtype=np.float64).reshape(-1, 2)
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    positive = scores >= config.positive_fraction * cut
    unsure = ~positive & (scores >= config.ignore_fraction * cut)
    label = disc_labels(shape, xy[positive], DEFAULT_FRACTION * particle_px / 2)
    label = mark_ignored(label, xy[unsure], config.ignore_radius * particle_px)
    return label, int(positive.sum()), int(unsure.sum())


def _prepared(paths: Sequence[Path], config: dict, diameter_A: float, apix: float | None, invert: bool,
              progress: bool) -> list[np.ndarray]:  # fmt: skip
    images = []
    for path in tqdm(paths, desc="prepare", disable=not progress, leave=False):
        mic = read_micrograph(path, apix=apix)
        if mic.apix is None:
            raise PixerError(f"{path}: pixel size unknown (not in the header): pass --apix")
        data = np.asarray(mic.data, dtype=np.float32)
        target = model_apix(config, diameter_A, mic.apix)
        image, _ = prepare(-data if invert else data, mic.apix, target, k=config.get("norm_k", 3.0))
        images.append(np.asarray(image, dtype=np.float32))
    return images


def _candidates(images: Sequence[np.ndarray], model: torch.nn.Module, config: dict, particle_px: float,
                device: str) -> list[tuple[np.ndarray, np.ndarray]]:  # fmt: skip
    tile = int(config.get("tile", 128))
    stride = int(config.get("stride") or tile // 2)
    out = []
    with torch.no_grad():
        for image in images:
            prob = probability_map(image, model, tile, stride, device=device)
            xy, scores = grid_local_maxima(prob, particle_px, min_score=CANDIDATE_FLOOR)
            out.append((np.asarray(xy, dtype=np.float64).reshape(-1, 2), np.asarray(scores, dtype=np.float64)))
    return out


def self_train(micrographs: Sequence[str | Path], diameter_A: float, out_dir: str | Path,
               model: str | Path | None = None, apix: float | None = None, invert: bool = False,
               config: AdaptConfig | None = None, progress: bool = True) -> dict:  # fmt: skip
    """Adapt ``model`` to ``micrographs`` by self-training; write the adapted model to ``out_dir``.

    Parameters
    ----------
    micrographs
        The run's micrograph files; at most ``config.max_micrographs`` of them,
        spread evenly, are used.
    diameter_A
        Particle diameter, Å (the one ``pixer pick`` will be given).
    out_dir
        Model folder to write (``model.pt``, ``config.json`` with an ``adapt``
        record); each round's model stays in ``out_dir/round_<k>``. A finished
        folder made from the same model, micrographs, diameter, contrast and
        settings (the device aside) is kept as it is (rerun: nothing done);
        any other is replaced.
    model
        Starting model folder, or None / ``"general"`` for the shipped general model.
    apix
        Micrograph pixel size, Å/px (default: the MRC headers).
    invert
        Particles brighter than the background (as ``pixer pick --polarity bright``).

    Returns
    -------
    dict
        The ``adapt`` record: ``rounds`` (per round ``cut``, ``rule``,
        ``particles``, ``ignored``, ``seconds``, ``pick_threshold``), ``micrographs``,
        ``source`` and the settings.
    """
    config = config or AdaptConfig()
    out = Path(out_dir)
    paths = sample_evenly([Path(p) for p in micrographs], config.max_micrographs)
    if len(paths) < 2:
        raise PixerError("self-training needs at least 2 micrographs (one is held out to calibrate the cut)")
    source = resolve_model(None if model is None else str(model))
    key = dict(source=str(source.resolve()), micrographs=[str(p.resolve()) for p in paths],
               diameter_A=float(diameter_A), invert=bool(invert),
               settings={k: v for k, v in asdict(config).items() if k != "device"})
    if (out / "config.json").is_file():
        record = json.loads((out / "config.json").read_text()).get("adapt") or {}
        if {k: record.get(k) for k in key} == key:
            return record  # done before with the same inputs
    for old in [*out.glob("round_*"), out / "config.json", out / "model.pt"]:  # another run's, or unfinished
        shutil.rmtree(old) if old.is_dir() else old.unlink(missing_ok=True)
    net, cfg = load_model(source, device=config.device)
    particle_px = float(cfg["particle_px"])
    images = _prepared(paths, cfg, diameter_A, apix, invert, progress)
    area = sum(im.size for im in images) / particle_px**2  # particle areas
    rounds, current = [], source
    for k in range(1, config.rounds + 1):
        cands = _candidates(images, net, cfg, particle_px, config.device)
        scores = np.concatenate([s for _, s in cands])
        null = background_of(cfg) if k == 1 else None
        if null:
            # null_particles is 0 exactly when null_threshold finds no cut
            found = null_particles(scores, area, null, micrographs=len(images))
            if found == 0:
                raise NothingToLearn(f"the model finds no particles above its background in the {len(images)} "
                                     "micrographs: nothing to self-train on")
            if found < config.min_particles * len(images):
                raise NothingToLearn(f"the model finds fewer than {config.min_particles:g} particles per micrograph "
                                     f"above its background in the {len(images)} micrographs: too few to self-train on")
            cut, rule = null_threshold(scores, area, null, micrographs=len(images))
        else:
            cut, rule = auto_threshold(scores, cfg.get("pick_threshold"), area, micrographs=len(images))
        samples, n_pos, n_ign = [], 0, 0
        for image, (xy, s) in zip(images, cands):
            label, p, i = pseudo_label(image.shape, xy, s, cut, particle_px, config)
            samples.append((image, label))
            n_pos, n_ign = n_pos + p, n_ign + i
        if n_pos == 0:
            raise NothingToLearn(f"self-training round {k}: the model finds no particle in the "
                                 f"{len(images)} micrographs ({rule}); check --diameter and the contrast")
        train_cfg = TrainConfig(
            tile=config.tile, batch_size=config.batch_size, steps=config.steps, lr=config.lr,
            n_branches=cfg["arch"]["n_branches"], width=cfg["arch"]["width"],
            branch_width=cfg["arch"].get("branch_width"), seed=config.seed + k - 1, device=config.device,
            apix=cfg.get("apix"), diameter_A=(diameter_A, diameter_A), norm_k=cfg.get("norm_k", 3.0),
            particle_px=particle_px, eval_every=max(1, min(100, config.steps // 4)),
            stride=cfg.get("stride"), init_from=str(current),
        )  # fmt: skip
        round_dir = out / f"round_{k}"
        metrics = train_segmentation(samples, round_dir, train_cfg, progress=progress)
        net, cfg = load_model(round_dir, device=config.device)
        rounds.append(dict(round=k, cut=round(float(cut), 6), rule=rule, particles=n_pos, ignored=n_ign,
                           seconds=round(float(metrics.get("seconds", 0.0)), 1),
                           pick_threshold=(cfg.get("pick_threshold") or {}).get("value")))
        current = round_dir
        if progress:
            print(f"pixer adapt: round {k}: cut {cut:.3f} ({rule.split(':')[0]}), {n_pos} pseudo-particles, "
                  f"{n_ign} left out, {metrics.get('seconds', 0):.0f} s", flush=True)
    record = dict(key, rounds=rounds)
    cfg["adapt"] = record
    tmp = out / "config.json.tmp"
    shutil.copyfile(current / "model.pt", out / "model.pt.tmp")
    tmp.write_text(json.dumps(cfg, indent=2))
    (out / "model.pt.tmp").replace(out / "model.pt")
    tmp.replace(out / "config.json")
    return record
