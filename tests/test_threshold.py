"""Pick thresholds: Otsu's split, the ``auto`` rule, and the model's own calibrated cut."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pixer.labels import disc_labels
from pixer.pick.threshold import (
    AUTO_SCORE_FLOOR,
    CANDIDATE_FLOOR,
    FALLBACK_THRESHOLD,
    auto_threshold,
    otsu_threshold,
)
from pixer.train.calibrate import calibrate_pick_threshold, label_centres

D = 16.0  # particle diameter, px


class MapAsLogits(torch.nn.Module):
    """A stand-in 'network' whose probability map is its input image (values in (0, 1))."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.logit(x.clamp(1e-4, 1 - 1e-4))


def blobs(shape, centres, heights, d=D):
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    out = np.full(shape, 1e-3, np.float32)
    for (x, y), h in zip(centres, heights, strict=True):
        out = np.maximum(out, h * np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * (0.15 * d) ** 2)))
    return out.astype(np.float32)


def test_otsu_splits_two_modes_and_reports_separability():
    rng = np.random.default_rng(0)
    s = np.concatenate([rng.uniform(0.05, 0.2, 300), rng.uniform(0.8, 0.95, 100)])
    t, eta = otsu_threshold(s)
    assert 0.2 <= t <= 0.8 and eta > 0.9
    t_auto, rule = auto_threshold(s)
    assert t_auto == pytest.approx(t) and rule.startswith("auto: Otsu")


def test_auto_ignores_the_faint_candidates_kept_below_its_own_floor():
    # parts keep candidates down to 0.001 for the curve; the auto rule sees what it saw before
    assert CANDIDATE_FLOOR < AUTO_SCORE_FLOOR
    rng = np.random.default_rng(2)
    bimodal = np.concatenate([rng.uniform(0.06, 0.2, 300), rng.uniform(0.8, 0.95, 100)])
    faint = rng.uniform(CANDIDATE_FLOOR, AUTO_SCORE_FLOOR, 5000)
    assert auto_threshold(np.concatenate([bimodal, faint])) == auto_threshold(bimodal)
    own = {"value": 0.42, "f1": 0.7, "n_true": 50, "n_micrographs": 1}
    t, rule = auto_threshold(np.concatenate([rng.uniform(0.06, 1.0, 10), faint]), own)
    assert t == 0.42 and "only 10 candidates" in rule


def test_auto_prefers_a_clear_split_then_the_models_own_cut_then_the_fallback():
    rng = np.random.default_rng(1)
    unimodal = rng.uniform(0.05, 1.0, 500)
    bimodal = np.concatenate([rng.uniform(0.05, 0.2, 300), rng.uniform(0.8, 0.95, 100)])
    own = {"value": 0.31, "f1": 0.8, "n_true": 120, "n_micrographs": 2}
    assert auto_threshold(unimodal)[0] == FALLBACK_THRESHOLD
    assert auto_threshold(unimodal[:5])[0] == FALLBACK_THRESHOLD
    t, rule = auto_threshold(unimodal, own)
    assert t == 0.31 and "model's own" in rule and "120 particles" in rule and "not bimodal" in rule
    assert auto_threshold(unimodal[:5], own)[0] == 0.31
    t, rule = auto_threshold(bimodal, own)
    assert t == pytest.approx(otsu_threshold(bimodal)[0]) and rule.startswith("auto: Otsu")


def test_label_centres_are_disc_centres():
    centres = np.array([[10.0, 12.0], [40.5, 30.0], [70.0, 55.0]])
    label = disc_labels((80, 90), centres, 5)
    found = label_centres(label)
    order = np.argsort(found[:, 0])
    np.testing.assert_allclose(found[order], centres, atol=0.51)
    assert label_centres(np.zeros((5, 5))).shape == (0, 2)


def test_calibration_cuts_between_true_particles_and_decoys():
    """True particles peak at 0.35-0.45 (an under-confident, fine-tuned-like model), decoys
    (not in the labels) at 0.15-0.25: the model's own cut lies between them and gives F1 1,
    where the fixed 0.5 would keep nothing."""
    rng = np.random.default_rng(2)
    samples = []
    for _ in range(2):
        pts = rng.permutation([(x, y) for x in range(20, 180, 30) for y in range(20, 140, 30)]).astype(float)
        true, decoy = pts[:14], pts[14:]
        prob = blobs((160, 200), np.vstack([true, decoy]),
                     np.r_[rng.uniform(0.35, 0.45, len(true)), rng.uniform(0.15, 0.25, len(decoy))])
        samples.append((prob, disc_labels(prob.shape, true, 0.3 * D)))
    calib = calibrate_pick_threshold(MapAsLogits(), samples, D, tile=128, stride=64)
    assert calib is not None and calib["n_true"] == 28 and calib["n_micrographs"] == 2
    assert calib["f1"] == pytest.approx(1.0) and calib["precision"] == calib["recall"] == 1.0
    assert CANDIDATE_FLOOR < calib["value"] < 0.45  # every true peak is below 0.5
    # too few labelled particles: no calibration
    assert calibrate_pick_threshold(MapAsLogits(), [(samples[0][0], np.zeros_like(samples[0][1]))], D) is None


def test_empty_validation_micrographs_raise_the_cut_until_they_stay_clean():
    """Two labelled micrographs (true peaks 0.85-1, decoys 0.15-0.25) and two empty ones whose
    junk peaks at 0.45-0.7: the F1-optimal cut, midway between decoys and particles, would
    leave junk picks on the empty micrographs; the calibrated cut rises above the junk and
    still keeps every true particle."""
    rng = np.random.default_rng(3)
    grid = [(x, y) for x in range(20, 180, 30) for y in range(20, 140, 30)]
    samples = []
    for k in range(4):
        pts = rng.permutation(grid).astype(float)
        if k < 2:
            true, decoy = pts[:14], pts[14:]
            prob = blobs((160, 200), np.vstack([true, decoy]),
                         np.r_[rng.uniform(0.85, 1.0, len(true)), rng.uniform(0.15, 0.25, len(decoy))])
            samples.append((prob, disc_labels(prob.shape, true, 0.3 * D)))
        else:
            junk = pts[:5]
            prob = blobs((160, 200), junk, rng.uniform(0.45, 0.7, len(junk)))
            samples.append((prob, np.zeros(prob.shape, np.uint8)))
    calib = calibrate_pick_threshold(MapAsLogits(), samples, D, tile=128, stride=64, max_picks_per_empty=1.0)
    assert calib["n_empty"] == 2 and calib["n_true"] == 28
    assert calib["f1_cut"] < calib["empty_cut"] == calib["value"]
    assert calib["picks_per_empty"] <= 1.0 and calib["recall"] == 1.0
    loose = calibrate_pick_threshold(MapAsLogits(), samples, D, tile=128, stride=64, max_picks_per_empty=10.0)
    assert loose["value"] == loose["f1_cut"] and loose["picks_per_empty"] > 1.0
