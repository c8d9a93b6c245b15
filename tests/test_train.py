"""Training loop: learns a synthetic task, is deterministic, writes its outputs."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import torch

from pixer.data import normalize
from pixer.labels import disc_labels
from pixer.models import load_model
from pixer.train import TileDataset, TrainConfig, train_segmentation

torch.set_num_threads(1)


def synthetic(n: int, size: int = 96, seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    """Bright blobs (particles, labelled) and dark blobs (decoys, unlabelled) in noise."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    out = []
    for _ in range(n):
        pos = rng.uniform(8, size - 8, (8, 2))
        sign = np.where(np.arange(8) < 5, 1.0, -1.0)
        img = rng.normal(0, 0.5, (size, size))
        for (x, y), s in zip(pos, sign, strict=True):
            img += 2.0 * s * np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * 5.0**2))
        out.append((normalize(img), disc_labels((size, size), pos[sign > 0], 6.0)))
    return out


def config(steps: int = 100, **kw) -> TrainConfig:
    base = dict(tile=64, batch_size=8, steps=steps, lr=1e-2, width=8, branch_width=8, n_branches=2,
                pos_weight=2.0, val_fraction=0.25, eval_every=20, warmup_steps=5, apix=4.0,
                diameter_A=(80.0, 120.0))  # fmt: skip
    base.update(kw)
    return TrainConfig(**base)


def test_learns_synthetic_particles_and_writes_outputs(tmp_path):
    samples = synthetic(8)
    m = train_segmentation(samples, tmp_path, config(), progress=False)
    assert m["val_held_out"] and m["n_val"] == 2 and m["n_train"] == 6
    assert m["val_iou"] >= 0.5, m
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["config.json", "model.pt", "train_curve.png", "train_log.csv"]
    with open(tmp_path / "train_log.csv") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["step"]) for r in rows] == [20, 40, 60, 80, 100]
    assert float(rows[-1]["val_iou"]) == pytest.approx(m["val_iou"], rel=1e-5)
    model, cfg = load_model(tmp_path)
    assert cfg["apix"] == 4.0 and cfg["diameter_A"] == [80.0, 120.0] and cfg["tile"] == 64
    assert cfg["stride"] == 32 and cfg["train"]["seed"] == 0 and cfg["arch"]["n_branches"] == 2
    assert (tmp_path / "train_curve.png").read_bytes()[:4] == b"\x89PNG"


def test_calibration_negatives_join_the_held_out_micrographs_for_the_pick_threshold(tmp_path):
    samples = synthetic(8)
    rng = np.random.default_rng(9)
    negatives = [(normalize(rng.normal(0, 0.5, (96, 96))), np.zeros((96, 96), np.uint8)) for _ in range(3)]
    m = train_segmentation(samples, tmp_path, config(steps=60, particle_px=12.0, val_fraction=0.5), progress=False,
                           calibration_negatives=negatives)
    own = load_model(tmp_path)[1]["pick_threshold"]
    assert own["n_empty"] == 3 and own["n_micrographs"] == m["n_val"] + 3
    assert own["picks_per_empty"] <= 1.0 and own["value"] >= own["f1_cut"]
    assert len(own["null"]["kappa"]) == len(own["null"]["density"])  # the background's spread is stored
    # a stricter bound on empty micrographs only recalibrates: a resumed run may change it
    train_segmentation(samples, tmp_path, config(steps=60, particle_px=12.0, val_fraction=0.5, max_picks_per_empty=0.0),
                       progress=False, resume=True, calibration_negatives=negatives)
    strict = load_model(tmp_path)[1]["pick_threshold"]
    assert strict["picks_per_empty"] == 0.0 and strict["value"] >= own["value"]
    assert strict["null"] == own["null"]  # same network, same background


def test_shuffled_labels_do_not_learn(tmp_path):
    samples = synthetic(8)
    shuffled = [(im, samples[(i + 1) % 8][1]) for i, (im, _) in enumerate(samples)]
    m = train_segmentation(shuffled, tmp_path, config(steps=60), progress=False)
    assert m["val_iou"] < 0.2, m


def test_deterministic_for_a_seed(tmp_path):
    samples = synthetic(3, size=64)
    a = train_segmentation(samples, tmp_path / "a", config(steps=6, eval_every=3), progress=False)
    b = train_segmentation(samples, tmp_path / "b", config(steps=6, eval_every=3), progress=False)
    assert (tmp_path / "a/train_log.csv").read_text() == (tmp_path / "b/train_log.csv").read_text()
    assert a["val_iou"] == b["val_iou"]
    wa = torch.load(tmp_path / "a/model.pt", weights_only=True)
    wb = torch.load(tmp_path / "b/model.pt", weights_only=True)
    assert all(torch.equal(wa[k], wb[k]) for k in wa)


def test_tile_dataset_items_depend_only_on_seed_and_index():
    samples = synthetic(2, size=40)  # smaller than the tile: zero-padded
    ds = TileDataset(samples, tile=48, length=10, seed=5)
    x, y = ds[3]
    assert x.shape == y.shape == (1, 48, 48) and x.dtype == y.dtype == torch.float32
    x2, y2 = TileDataset(samples, tile=48, length=10, seed=5)[3]
    assert torch.equal(x, x2) and torch.equal(y, y2)
    assert set(torch.unique(y).tolist()) <= {0.0, 1.0}
    assert not torch.equal(ds[4][0], x)
